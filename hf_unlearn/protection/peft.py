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
from ..core.layers import TRANSPOSED_LINEAR, is_peft_model, layer_kind  # noqa: F401  (is_peft_model: re-exported)

PEFT_PREFIX = "base_model.model."


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


def saved_copies(modules: dict[str, nn.Module], name: str) -> tuple[nn.Module, dict[str, nn.Module]] | None:
    """A layer trained whole through ``modules_to_save``: its original and its copy per adapter, or None.

    The wrapper may sit on the layer itself or on a module around it: ``modules_to_save=["classifier"]`` on an HF
    ResNet wraps the ``Sequential(Flatten, Linear)`` head, whose Linear is the layer ``classifier.1``.
    """
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        wrapper = modules.get(PEFT_PREFIX + ".".join(parts[:cut]))
        if wrapper is not None and hasattr(wrapper, "original_module") and hasattr(wrapper, "modules_to_save"):
            rest = ".".join(parts[cut:])
            copies = {adapter: copy.get_submodule(rest) for adapter, copy in wrapper.modules_to_save.items()}
            return wrapper.original_module.get_submodule(rest), copies
    return None


def peft_targets(model: nn.Module, layer_names) -> PeftTargets:
    modules = dict(model.named_modules())
    targets = PeftTargets()
    for name in layer_names:
        module = modules.get(PEFT_PREFIX + name)
        saved = saved_copies(modules, name)
        if saved is not None:
            targets.stats_modules[name] = saved[0]
            for adapter, copy in saved[1].items():
                transposed = layer_kind(copy) == TRANSPOSED_LINEAR
                targets.updates[f"{name}#modules_to_save.{adapter}"] = (name, copy.weight, transposed)
            continue
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
        else:
            targets.stats_modules[name] = module  # untouched by PEFT: frozen with the base model
    return targets
