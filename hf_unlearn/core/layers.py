"""Which layers a Core Gradient Space can protect, and what input vectors each one multiplies.

A layer is protectable when its weight acts on its input as a matrix product W·x: Linear, Conv1d,
Conv2d and transformers' GPT-2 style ``Conv1D`` (weight stored transposed, ``(in, out)``). For
each one we need the rows ``x`` the weight multiplies, in the column order of the weight viewed as
a matrix; the Gram of those rows spans the directions the layer "knows about".

This module stays plain torch: transformers' ``Conv1D`` is recognised by its class name and its
``nf`` attribute, so no transformers import is needed.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

LINEAR = "linear"
CONV1D = "conv1d"
CONV2D = "conv2d"
TRANSPOSED_LINEAR = "transposed_linear"  # transformers.pytorch_utils.Conv1D: weight is (in, out)


def has_adapters(model: nn.Module) -> bool:
    """Adapters attached, by ``peft`` or by transformers' ``load_adapter`` (which leaves nothing to merge them with)."""
    return hasattr(model, "peft_config")


def is_peft_model(model: nn.Module) -> bool:
    """A ``peft.PeftModel``: adapters over a base model (``get_base_model``); duck-typed (no peft import)."""
    return has_adapters(model) and hasattr(model, "get_base_model")


class UnsupportedLayerError(ValueError):
    """A layer was asked for that the CGS cannot represent exactly."""


@dataclass(frozen=True)
class LayerInfo:
    """What the space needs to know about a protected layer, independent of the module object."""

    kind: str
    weight_shape: tuple[int, ...]

    @property
    def input_dim(self) -> int:
        if self.kind == TRANSPOSED_LINEAR:
            return self.weight_shape[0]
        dim = 1
        for size in self.weight_shape[1:]:
            dim *= size
        return dim


def _is_transposed_linear(module: nn.Module) -> bool:
    # by class name (transformers is optional here), anywhere in the MRO: FSDP2 swaps in an FSDPConv1D subclass
    named = any(cls.__name__ == "Conv1D" for cls in type(module).__mro__)
    return named and hasattr(module, "nf") and module.weight.dim() == 2


def layer_kind(module: nn.Module) -> str | None:
    """The kind of a protectable layer, or None for anything else."""
    if isinstance(module, nn.Linear):
        return LINEAR
    if isinstance(module, nn.Conv2d):
        return CONV2D
    if isinstance(module, nn.Conv1d):
        return CONV1D
    if _is_transposed_linear(module):
        return TRANSPOSED_LINEAR
    return None


def _unsupported_reason(module: nn.Module) -> str | None:
    if isinstance(module, nn.Conv1d | nn.Conv2d) and module.groups > 1:
        return (
            f"grouped convolution (groups={module.groups}) has one input space per group; "
            "hf_unlearn does not protect it"
        )
    return None


def grouped_convolutions_note(model: nn.Module, names: Iterable[str] | None = None) -> str | None:
    """What a user must hear when grouped convolutions (``names``, else all of ``model``'s) are left out of the space:
    how many, their share of the Linear/Conv weights, and that they stay frozen; None when there are none.

    A SqueezeBERT's attention and feed-forward projections are grouped: left out without a word, a request moved
    5 of its 20 weight layers and stalled at the step budget.
    """
    layers = {name: module for name, module in model.named_modules() if name and layer_kind(module) is not None}
    grouped = [name for name in (names if names is not None else layers) if _unsupported_reason(layers[name])]
    if not grouped:
        return None
    total = sum(module.weight.numel() for module in layers.values())
    share = 100.0 * sum(layers[name].weight.numel() for name in grouped) / max(total, 1)
    return (f"{len(grouped)} of the {len(layers)} Linear/Conv layers of {type(model).__name__} are grouped "
            f"convolutions ({share:.0f} % of those layers' weights; the first: '{grouped[0]}'). hf_unlearn does not "
            "protect them: they are left out of the Core Gradient Space and stay frozen while unlearning, so only the "
            "other layers can forget (train_unprotected=True lets them move unprojected, and what the kept data "
            "holds in them is then not protected).")


def _safe_fullmatch(pattern: str, name: str) -> bool:
    try:
        return re.fullmatch(pattern, name) is not None
    except re.error:
        return False


def find_protectable_layers(
    model: nn.Module,
    include: Iterable[str] | None = None,
    exclude: Iterable[str] | None = None,
) -> dict[str, nn.Module]:
    """Map ``name -> module`` for every protectable layer of ``model``.

    ``include``/``exclude`` are glob patterns (``"*.attention.*"``) or regular expressions matched
    against the full module name. With no ``include`` every supported layer is taken and grouped
    convolutions are skipped (they cannot be protected exactly; the trainer freezes them). Naming a
    grouped convolution explicitly raises, so a user never believes it is protected when it is not.
    Layers inside PEFT's ``lora_A``/``lora_B``/``base_layer`` wrappers are skipped by default: the
    protected weight of a LoRA layer is handled through its base layer's input.
    """
    include = list(include) if include else None
    exclude = list(exclude) if exclude else []
    selected: dict[str, nn.Module] = {}
    tied = tied_to_other_modules(model)
    for name, module in model.named_modules():
        if not name or layer_kind(module) is None:
            continue
        if exclude and any(fnmatch.fnmatchcase(name, p) or _safe_fullmatch(p, name) for p in exclude):
            continue
        if include is not None:
            if not any(fnmatch.fnmatchcase(name, p) or _safe_fullmatch(p, name) for p in include):
                continue
            reason = _unsupported_reason(module) or tied.get(name)
            if reason:
                raise UnsupportedLayerError(
                    f"Layer '{name}': {reason}. Remove it from the layer patterns (or add it to exclude)."
                )
        elif _unsupported_reason(module) or _is_peft_internal(name):
            continue
        elif name in tied:
            logger.info("Not protecting '%s': %s; it stays frozen", name, tied[name])
            continue
        selected[name] = module
    if include is None and (note := grouped_convolutions_note(model)):
        logger.warning(note)
    if not selected:
        raise UnsupportedLayerError(
            "No protectable layer (Linear, Conv1d, Conv2d, transformers Conv1D) matched "
            f"include={include} exclude={exclude} in {type(model).__name__}."
        )
    return selected


def tied_to_other_modules(model: nn.Module) -> dict[str, str]:
    """Protectable layers whose weight is also a token-embedding table (an LM head tied to the embedding).

    The space protects a layer's *inputs*; the same matrix read as an embedding table changes the
    embedding's output for every kept token, which no input projection can keep. Such a layer is not
    protected and its weight stays frozen with the other unprotected parameters (said in the log).
    (Only embeddings count: a PEFT wrapper exposes its base layer's weight too, and that is not a tie.)
    """
    tables = {id(m.weight): n for n, m in model.named_modules() if isinstance(m, nn.Embedding)}
    return {
        name: f"its weight is the embedding table of '{tables[id(module.weight)]}' (tied), read there as outputs"
        for name, module in model.named_modules()
        if layer_kind(module) is not None and id(module.weight) in tables
    }


def _is_peft_internal(name: str) -> bool:
    parts = name.split(".")
    return any(p in ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B") for p in parts)


def layer_info(module: nn.Module) -> LayerInfo:
    kind = layer_kind(module)
    if kind is None:
        raise UnsupportedLayerError(f"{type(module).__name__} is not a protectable layer")
    return LayerInfo(kind=kind, weight_shape=tuple(module.weight.shape))


def input_rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rows the layer's weight multiplies, shaped ``(N, d)`` in the weight's column order.

    Linear layers see every leading position (batch × tokens) as a row. Convolutions see the
    patches they actually slide over, taken with the layer's own stride, padding (any mode,
    including ``"same"``) and dilation, so ``rows @ W.view(out, -1).T`` reproduces the output.
    """
    kind = layer_kind(module)
    if kind in (LINEAR, TRANSPOSED_LINEAR):
        return x.reshape(-1, x.shape[-1])
    reason = _unsupported_reason(module)
    if reason:
        raise UnsupportedLayerError(reason)
    if kind == CONV1D:
        x = x.unsqueeze(-2)  # (B, C, 1, L): a 1-D conv is a 2-D conv of height 1
        kernel, stride, dilation = (1, *module.kernel_size), (1, *module.stride), (1, *module.dilation)
    elif kind == CONV2D:
        kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    else:
        raise UnsupportedLayerError(f"{type(module).__name__} is not a protectable layer")
    pad = module._reversed_padding_repeated_twice  # torch's own (left, right, top, bottom) amounts
    if any(pad):
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, pad if kind == CONV2D else (*pad[:2], 0, 0), mode=mode)
    patches = F.unfold(x, kernel_size=kernel, dilation=dilation, stride=stride)  # (B, C*k, L)
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])
