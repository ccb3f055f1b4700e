"""Which parameters may move during unlearning.

Biases and normalisation layers have no input space a projection could protect, so they are frozen
by default (as in PGU's reference code), BatchNorm running statistics included. For a projection
method, every weight outside the space is frozen too, unless the user asks to train it.
"""

from __future__ import annotations

import logging

from torch import nn

from ..core.layers import grouped_convolutions_note
from .peft import PeftTargets

logger = logging.getLogger(__name__)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def freeze_parameters(
    model: nn.Module,
    *,
    protected_layers: set[str] | None,
    freeze_bias_and_norm: bool,
    train_unprotected: bool,
) -> int:
    """Freeze what must not move; ``protected_layers`` is None for methods without projection.

    Returns the number of parameter tensors frozen; raises when nothing trainable is left.
    """
    frozen, grouped = 0, []
    for module_name, module in model.named_modules():
        for param_name, param in module.named_parameters(recurse=False):
            is_norm = isinstance(module, NORM_TYPES)
            is_bias = param_name == "bias"
            outside = (
                protected_layers is not None
                and not (module_name in protected_layers and param_name == "weight")
                and not (is_bias or is_norm)
            )
            if (freeze_bias_and_norm and (is_bias or is_norm)) or (outside and not train_unprotected):
                if param.requires_grad:
                    param.requires_grad_(False)
                    frozen += 1
                    if outside and param_name == "weight" and getattr(module, "groups", 1) > 1:
                        grouped.append(module_name)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("Every parameter is frozen: nothing can be unlearned. Check protect_layers.")
    logger.info("Froze %d parameter tensors", frozen)
    if grouped and (note := grouped_convolutions_note(model, grouped)):
        logger.warning(note)
    return frozen


def freeze_peft_parameters(
    model: nn.Module, targets: PeftTargets, *, freeze_bias_and_norm: bool, train_unprotected: bool
) -> None:
    """Under PEFT only projected LoRA A / modules_to_save weights and their LoRA B partners move."""
    allowed = {id(w) for _, w, _ in targets.updates.values()} | {id(b) for b in targets.free}
    for name, param in model.named_parameters():
        outside = id(param) not in allowed and not train_unprotected
        if param.requires_grad and (outside or (freeze_bias_and_norm and name.endswith("bias"))):
            param.requires_grad_(False)
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("No LoRA weight of the PEFT model lies in a protected layer: nothing can be unlearned.")


def batch_norms_in_eval_mode(model: nn.Module) -> None:
    """BatchNorm running statistics are part of what the model knows: keep them still while training."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
