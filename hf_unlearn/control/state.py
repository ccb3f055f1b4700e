"""What a controlled run is told (``ControlSettings``) and what it reports (``RunOutcome``), and the weight
copies its rollbacks use. Kept apart from ``controller.py``, which decides; the trainer, the card and the
ledger read these."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from ..utils.zero3 import whole_parameters
from .stop_rules import resolve_stop_rule

# a causal LM's texts count as forgotten once their tokens are as unlikely as held-out texts' (the control's keys)
LM_SAMPLE_RULE = {"forget_key": "forget_likelihood", "validation_key": "validation_likelihood",
                  "compared": "forget-text likelihood", "compared_validation": "validation-text likelihood",
                  "confidence_key": ""}


@dataclass
class ControlSettings:
    """What the control is told: the resolved stop rule, how often it checks, and the guard's limits."""

    rule: str = "none"  # forget_below_validation, class_removal, poison_removed or none (already resolved)
    check_every: int = 0  # optimizer steps between checks; 0 = automatic (see ``_interval``)
    check_examples: int = 0  # examples one check runs forward (forget + retain + validation samples)
    examples_per_step: int = 1  # examples one optimizer step trains on (both streams, all processes)
    tolerance: float = 3.0  # points of retain / validation accuracy the guard allows to lose
    shrink: float = 0.5
    max_backtracks: int = 6
    max_overshoots: int = 3  # sample removal: returns to the previous good state at half the step (bisection)
    class_forget_target: float = 1.0  # percent
    class_probability: float = 0.05
    poison_forget_target: float = 5.0  # percent of the poisoned examples still given their poisoned label
    check_density: int = 1  # checks per default interval (see ``_interval``)
    # sample removal: a stalled run (at its pace more than ``growth_horizon`` checks from the confidence target)
    # multiplies the step by ``growth``, at most ``max_growths`` times and never after a rollback or an overshoot
    growth: float = 1.0  # 1 = never grow
    max_growths: int = 2
    growth_horizon: float = 8.0
    # what sample removal compares: accuracy for classifiers; for causal LMs the target tokens' likelihood
    # (100·exp(−mean loss)), the signal a loss-based membership test reads
    forget_key: str = "forget_accuracy"
    validation_key: str = "validation_accuracy"
    compared: str = "forget accuracy"  # the two measures in words
    compared_validation: str = "validation accuracy"
    # a classifier's second signal: the mean probability of the true label (what a confidence attacker reads);
    # "" = accuracy only (causal LMs: their likelihood already is that signal)
    confidence_key: str = "probability"

    @classmethod
    def from_args(
        cls, args, *, scenario: str, has_eval: bool, causal_lm: bool, check_examples: int, needs_retain: bool
    ) -> ControlSettings:
        """The control a run's ``UnlearningArguments`` ask for, completed with what only the trainer knows: the
        detected scenario, whether an eval set exists, the model kind, how many examples one check reads, and
        whether every batch carries a retain stream (twice the examples per step)."""
        return cls(
            rule=resolve_stop_rule(args.stop_rule, scenario, has_eval),
            check_every=args.check_every_steps,
            tolerance=args.utility_tolerance,
            max_backtracks=args.max_backtracks,
            growth=args.step_growth if args.step_growth is not None else args.method_config.step_growth,
            class_forget_target=args.class_forget_target,
            class_probability=args.class_forget_probability,
            poison_forget_target=args.poison_forget_target,
            **(LM_SAMPLE_RULE if causal_lm else {}),
            check_examples=check_examples,
            examples_per_step=args.per_device_train_batch_size
            * args.gradient_accumulation_steps
            * (2 if needs_retain else 1),
        )

    def unmet(self, metrics: dict[str, float], target: Callable[[str | None], float]) -> str:
        """The stop rule's target in words, against ``metrics`` where the run ended before reaching it.
        ``target(key)`` is the original's validation measure ``key`` (``None``: the rule's own)."""
        forget = metrics.get("forget_accuracy", math.nan)
        if self.rule == "class_removal":
            return (
                f"the forgotten classes are still predicted on {forget:.1f} % of the forget sample (target at most "
                f"{self.class_forget_target:g} %), with mean probability "
                f"{metrics.get('forget_probability', math.nan):.3f} (target at most {self.class_probability:g})"
            )
        if self.rule == "poison_removed":
            return (
                f"the poisoned examples still get their poisoned labels on {forget:.1f} % of the forget sample "
                f"(target at most {self.poison_forget_target:g} %)"
            )
        confidence = self.confidence_key
        also = (
            f", nor its confidence {metrics.get(f'forget_{confidence}', math.nan):.3f} the original's "
            f"{target(f'validation_{confidence}'):.3f}"
            if confidence else ""
        )
        return (
            f"{self.compared} {metrics.get(self.forget_key, math.nan):.1f} has not reached the original model's "
            f"{self.compared_validation} {target(None):.1f}{also}: the forget set still looks like training data"
        )


@dataclass
class RunOutcome:
    """What the run did, for the log, the model card, the ledger and the caller."""

    unlearned: bool = False
    reason: str = "not run"
    steps: int = 0
    checks: int = 0
    backtracks: int = 0
    overshoots: int = 0  # times the sample-removal target was crossed too far and the step halved
    growths: int = 0  # times a stalled sample removal had its step grown (see ``ControlSettings.growth``)
    closer_looks: int = 0  # guard alarms re-read on a retain sample sized from the tolerance
    cleared_alarms: int = 0  # of those, alarms the larger sample did not confirm (no rollback)
    learning_rate_scale: float = 1.0
    stopped_by: str = "budget"
    initial: dict[str, float] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    weight_change: float = 0.0  # relative L2 change of the trainable weights
    warnings: list[str] = field(default_factory=list)  # e.g. a full-set utility drop the sampled guard missed
    incomplete: str = ""  # why the stop rule's target was not reached (budget or guard ended the run first)

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict:
        """What ``UnlearningTrainer.train`` adds to the Trainer's metrics."""
        return {
            "unlearned": self.unlearned,
            "unlearning_outcome": self.reason,
            "utility_warnings": len(self.warnings),
            "removal_complete": self.unlearned and not self.incomplete,
        }


def copy_weights(
    model: nn.Module, like: dict[str, torch.Tensor] | None = None, trainable_too: bool = False
) -> dict[str, torch.Tensor]:
    """Every parameter, frozen ones too: class removal moves a frozen output bias outside the optimizer.
    Whole weights under ZeRO-3 too (gathered one at a time, see zero3.py).

    A frozen parameter (any, with ``trainable_too``) whose bits equal its tensor in ``like``, an earlier copy,
    shares that tensor instead of a new copy: copies are never written into, and a guard holding three of them
    would otherwise hold three copies of an LM's embedding (113 MB each for SmolLM2-135M) that no step moves.
    """
    copies = {}
    for name, param in model.named_parameters():
        with whole_parameters([param]):
            compared = like is not None and (trainable_too or not param.requires_grad)
            earlier = like.get(name) if compared else None
            if earlier is not None and same_bits(earlier, param.detach()):
                copies[name] = earlier
            else:
                copies[name] = param.detach().to("cpu", copy=True)
    return copies


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal shapes, dtypes and bits (``torch.equal`` calls 0.0 and -0.0 equal and NaN unequal to itself)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.is_floating_point() or a.is_complex():
        bits = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(a.element_size())
        if bits is None:
            return False
        a, b = a.view(bits), b.view(bits)
    return torch.equal(a, b.to(a.device))


def weights_finite(model: nn.Module) -> bool:
    """Every parameter finite (whole weights under ZeRO-3, gathered one at a time)."""
    for param in model.parameters():
        with whole_parameters([param]):
            if not torch.isfinite(param.detach()).all():
                return False
    return True


def restore_weights(model: nn.Module, weights: dict[str, torch.Tensor], optimizer=None) -> None:
    """Put ``weights`` back; an optimizer holding master copies (DeepSpeed ZeRO) reloads them from the model,
    or its next step would write the rolled-back weights over with the old ones."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            with whole_parameters([params[name]], modify=True):
                params[name].copy_(value)
    refresh = getattr(getattr(optimizer, "optimizer", optimizer), "refresh_fp32_params", None)
    if refresh is not None:
        refresh()


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
