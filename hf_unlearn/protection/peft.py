"""Projected-gradient unlearning on a PEFT (LoRA) model.

With LoRA the trainable update of a layer is ΔW = B·A (scaled), so ΔW·x = B·(A·x). Keeping the rows
of every ``lora_A`` orthogonal to the layer's protected space (at the start and after every step)
makes A·x = 0 for every kept input x, whatever B learns; ``modules_to_save`` copies (a classifier
head) are projected like ordinary layers. The Core Gradient Space is the one of the base model:
the base weights are frozen and ``base_layer`` sees exactly the inputs the space was built from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import nn

from ..core import CGSMismatchError
from ..core.layers import TRANSPOSED_LINEAR, layer_kind

PEFT_PREFIX = "base_model.model."


def is_peft_model(model: nn.Module) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


@dataclass
class PeftTargets:
    """Per layer of the space: the module that holds its statistics, and the weights to project."""

    stats_modules: dict[str, nn.Module] = field(default_factory=dict)
    updates: dict[str, tuple[str, nn.Parameter, bool]] = field(default_factory=dict)
    free: list[nn.Parameter] = field(default_factory=list)  # lora_B: safe once A·x = 0


def base_model_layers(model: nn.Module, include=None, exclude=None) -> dict[str, nn.Module]:
    """A PEFT model's protectable layers under the names they have in its base model.

    A space built from the PEFT model itself must be the base model's space: the one a space built
    before the adapter was added would be, and the one ``peft_targets`` looks layers up in. A LoRA
    layer's statistics are its ``base_layer``'s inputs; a ``modules_to_save`` copy's are its original's.
    """
    from ..core.layers import find_protectable_layers

    base = model.get_base_model()
    layers = {}
    for name, module in find_protectable_layers(base, include, exclude).items():
        if ".modules_to_save." in f".{name}.":
            continue  # the trainable copy: its original module stands for the layer
        layers[name.replace(".base_layer", "").replace(".original_module", "")] = module
    return layers


def peft_targets(model: nn.Module, layer_names) -> PeftTargets:
    modules = dict(model.named_modules())
    targets = PeftTargets()
    for name in layer_names:
        module = modules.get(PEFT_PREFIX + name)
        if module is None:
            raise CGSMismatchError(
                f"The cache protects layer '{name}', which the PEFT model has no module for "
                f"(looked for '{PEFT_PREFIX}{name}'). Build the cache from the PEFT model's base model."
            )
        if hasattr(module, "base_layer") and hasattr(module, "lora_A"):
            targets.stats_modules[name] = module.base_layer
            for adapter, lora_a in module.lora_A.items():
                targets.updates[f"{name}#lora_A.{adapter}"] = (name, lora_a.weight, False)
            targets.free += [lora_b.weight for lora_b in module.lora_B.values()]
        elif hasattr(module, "original_module") and hasattr(module, "modules_to_save"):
            targets.stats_modules[name] = module.original_module
            for adapter, copy in module.modules_to_save.items():
                transposed = layer_kind(copy) == TRANSPOSED_LINEAR
                targets.updates[f"{name}#modules_to_save.{adapter}"] = (name, copy.weight, transposed)
        else:
            targets.stats_modules[name] = module  # untouched by PEFT: frozen with the base model
    return targets
