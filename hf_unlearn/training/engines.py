"""Which distributed engine a run may use, decided before any weight moves.

DDP and one process project each applied update (``protection/updates.py``). DeepSpeed ZeRO owns the
optimizer step (fp32 master partitions copied back over the model), so projected runs switch to gradient
projection (``protection/gradients.py``), which keeps the update out of the protected space only for an
update that is a linear combination of past gradients: SGD without weight decay. Gradient clipping then
reads the projected gradients' norm (DDP clips raw ones), so the two agree step by step only while it does
not act. ZeRO-3 also partitions the weights when its engine starts: the model must arrive whole (the checks
before the first step read it), and what reads or writes whole weights later gathers them (``zero3.py``).
FSDP through the Trainer is refused for projected methods (the torch-level FSDP2 projection is tested, the
Trainer wiring is not).
"""

from __future__ import annotations

import logging

from transformers import Trainer

from ..core import UnsupportedSetupError
from ..utils.zero3 import is_partitioned

logger = logging.getLogger(__name__)


def _optimizer(trainer: Trainer) -> tuple[str, float, bool]:
    """(name, weight decay, built by DeepSpeed) of the optimizer the run will step with."""
    config = trainer.accelerator.state.deepspeed_plugin.deepspeed_config.get("optimizer")
    if config:
        decay = config.get("params", {}).get("weight_decay", 0.0)
        decay = trainer.args.weight_decay if decay == "auto" else decay  # the Trainer fills "auto" from its args
        return str(config.get("type", "")), float(decay or 0.0), True
    optim = trainer.args.optim
    return str(getattr(optim, "value", optim)), float(trainer.args.weight_decay), False


def must_project_gradients(trainer: Trainer) -> bool:
    """Refuse what an engine cannot run, by name; True when gradients must be projected instead of updates.

    ``trainer`` is an ``UnlearningTrainer``: its method, protection and scenario are read.
    """
    args, projected = trainer.args, trainer.protection is not None
    if trainer.is_fsdp_enabled and projected:
        raise UnsupportedSetupError(
            "Projected unlearning under FSDP through the Trainer is not supported: FSDP replaces the parameters "
            "after the projection is set up. Use DeepSpeed ZeRO-2 (recipes/accelerate/deepspeed_zero2.yaml), "
            "data-parallel (DDP) or one process; FSDP2's sharded projection itself is verified at the torch level "
            "(docs/performance.md)."
        )
    if not trainer.is_deepspeed_enabled:
        return False
    plugin = trainer.accelerator.state.deepspeed_plugin
    if plugin.zero_stage == 3:
        _check_zero3(trainer)
    if trainer.method.acts_on_steps():
        raise UnsupportedSetupError(
            f"{args.method} changes gradients or weights around each optimizer step, and DeepSpeed does the step "
            "inside backward on its own master copies. Run it data-parallel (DDP) or in one process"
            + (", or set pgu_normalize_gradient=False." if args.method.startswith("pgu") else ".")
        )
    if not projected:
        return False
    name, decay, by_deepspeed = _optimizer(trainer)
    if name.lower() != "sgd" or decay != 0.0:
        raise UnsupportedSetupError(
            f"Under DeepSpeed {args.method} projects gradients, which keeps the update out of the protected space "
            f"only for SGD without weight decay; the run would step with {name} (weight decay {decay:g}). Use "
            "optim='sgd' and weight_decay=0, and no optimizer section in the DeepSpeed config."
        )
    if plugin.zero_stage > 0 and not by_deepspeed:
        if not plugin.deepspeed_config.get("zero_allow_untested_optimizer", False):
            raise UnsupportedSetupError(
                "DeepSpeed ZeRO accepts torch's SGD only with \"zero_allow_untested_optimizer\": true in its config "
                "(recipes/accelerate/deepspeed_zero2.json has it)."
            )
    if trainer.scenario == "class" and args.unproject_forgotten_outputs and not args.freeze_bias_and_norm:
        raise UnsupportedSetupError(
            "Class removal under DeepSpeed offsets the removed classes' output rows through their bias after each "
            "step; with freeze_bias_and_norm=False the bias is trainable and DeepSpeed's master copy would overwrite "
            "the offset. Keep freeze_bias_and_norm=True (the default), or pass unproject_forgotten_outputs=False."
        )
    if _clip_norm(trainer) > 0:
        logger.warning(
            "Under DeepSpeed gradient clipping reads the norm of the projected gradients (data-parallel runs clip the "
            "raw ones): the run steps as a DDP run would until clipping acts, and further once it does; the update "
            "stays out of the protected space either way. Set max_grad_norm=0 for step-by-step agreement."
        )
    return True


def _check_zero3(trainer: Trainer) -> None:
    """ZeRO-3 partitions the weights when its engine starts; what runs before the first step needs them whole."""
    if any(is_partitioned(p) for p in trainer.model.parameters()):
        raise UnsupportedSetupError(
            "The model's weights are already partitioned by DeepSpeed ZeRO-3 (loaded under zero.Init, or left so by "
            "an earlier ZeRO-3 run, e.g. a previous request of a series), but the checks and the forget set's "
            "statistics that run before the first step need whole weights. Load the model before creating the "
            "TrainingArguments (under accelerate launch also set zero3_init_flag: false; recipes/unlearn.py loads it "
            "whole itself) and serve one request per ZeRO-3 run; ZeRO-3 partitions it when training starts."
        )


def _clip_norm(trainer: Trainer) -> float:
    """The gradient-norm bound DeepSpeed will apply ("auto" is the Trainer's ``max_grad_norm``)."""
    clip = trainer.accelerator.state.deepspeed_plugin.deepspeed_config.get("gradient_clipping", 0.0)
    clip = getattr(trainer.args, "max_grad_norm", 0.0) if clip == "auto" else clip
    return float(clip or 0.0)
