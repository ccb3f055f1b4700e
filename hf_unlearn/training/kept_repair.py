"""Putting back the kept examples a sample removal flipped.

Forgetting memorized examples moves weights that kept examples' memorization uses too: on a memorizing BatchNorm
ResNet, random 10 % requests cost 0.6-1.4 points of retain accuracy where a retrained model loses none
(docs/fidelity.md, "Repair of flipped kept examples"). Those kept examples are few and can be named: the original
classifies them right and the unlearned model does not. Once the stop rule is met, a few more steps of the method's
own loss, projected as every step is, with those examples as the retain batch, bring them back.

Training on kept examples alone raised the forget sample 1.5-5.5 points in 1-6 steps there (kept and forgotten
look-alikes share their memorization). So the repair keeps the forget term in its loss, at a fifth of the run's
step, and goes on until the flipped examples are right *and* the forget sample is back at or below its reading at
the stop. Read again at the end, a forget sample still above both that reading and its target by more than its
resolution (the standard error the stop rule's crossing already allows) undoes the repair, as does a loss on the
retain or validation sample beyond the guard's tolerance.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass

import torch
from torch.utils.data import Subset

from ..control.state import copy_weights, restore_weights
from ..control.stop_rules import reading_resolution
from ..evaluation.predict import collect_outputs
from ..protection.freezing import batch_norms_in_eval_mode

logger = logging.getLogger(__name__)

SCAN_LIMIT = 8192  # kept examples read to find the flipped ones: a forward pass, about a third of an epoch's cost
STEP_SCALE = 0.2  # the repair's step against the run's last one (1.0 raised the forget sample further)


@dataclass
class RepairReport:
    """What the repair did, for the log and the run's outcome."""

    scanned: int
    flipped: int  # kept examples the original got right and the unlearned model got wrong
    steps: int = 0
    fixed: int = 0  # of those, right again after the repair
    kept: bool = False
    why_undone: str = ""

    def describe(self) -> str:
        if not self.flipped:
            return f"none of the {self.scanned} kept examples read had been flipped by the forgetting steps"
        done = (f"{self.steps} repair steps put back {self.fixed} of the {self.flipped} kept examples (of "
                f"{self.scanned} read) that the forgetting steps had flipped")
        return done if self.kept else f"{done}; undone ({self.why_undone})"


def wants_repair(trainer) -> int:
    """Repair steps this run may take: a classifier's sample removal whose stop rule was met (its target is the
    held-out reading the forget sample is held to afterwards; class and poison removal have other targets), on one
    process whose updates the trainer projects itself (an engine that owns the step, DeepSpeed, takes no steps
    outside its loop)."""
    outcome = trainer.control_callback.outcome
    eligible = (
        outcome.unlearned and outcome.stopped_by == "rule" and not outcome.incomplete
        and trainer.control_callback.settings.rule == "forget_below_validation"  # not class or poison removal
        and not trainer.causal_lm and trainer.args.world_size == 1
        and trainer.retain_dataset is not None and trainer.protection is not None
        and trainer.protection.gradient_hooks is None
    )
    return trainer.method.repair_steps() if eligible else 0


def repair_kept_examples(trainer, max_steps: int) -> RepairReport:
    """Find the flipped kept examples, step until they are right or ``max_steps`` ran out, and keep the result only
    if the forget sample still reads as removed and the retain and validation samples held."""
    control, args = trainer.control_callback, trainer.args
    logger.info("Repair: reading up to %d kept examples for those the forgetting flipped", SCAN_LIMIT)
    retain = _scanned(trainer._memory(trainer.retain_dataset), args.seed)
    model = trainer.accelerator.unwrap_model(trainer.model)
    wrong = _wrong_among(trainer, model, retain)  # the original reads only these
    flipped = _right_among(trainer, trainer.method.teacher, retain, wrong)
    report = RepairReport(scanned=len(retain), flipped=len(flipped))
    if not flipped:
        return report
    saved, before = copy_weights(model), dict(control.outcome.final)
    _take_steps(trainer, model, retain, flipped, max_steps, report, before)
    report.fixed = report.flipped - len(_wrong_among(trainer, model, retain, flipped))
    after = trainer.control_metrics()
    report.why_undone = _forget_rose(control, before, after) or _utility_lost(before, after, args.utility_tolerance)
    report.kept = not report.why_undone
    if report.kept:
        control.outcome.final = dict(after)
    else:
        restore_weights(model, saved, trainer.optimizer)
    return report


def _take_steps(trainer, model, retain, flipped: list[int], max_steps: int, report: RepairReport,
                before: dict[str, float]) -> None:
    """Steps of the method's loss, the forget stream cycling and the flipped examples as the retain stream, until
    every flipped example is right again and the forget sample is back at or below its reading at the stop (both
    read after each pass), or the steps run out."""
    args, optimizer = trainer.args, trainer.optimizer
    forget = trainer._memory(trainer.forget_dataset)
    size, rng = args.per_device_train_batch_size, random.Random(args.seed)
    forget_order = list(range(len(forget)))
    rng.shuffle(forget_order)
    rates = [group["lr"] for group in optimizer.param_groups]
    for group in optimizer.param_groups:
        group["lr"] *= STEP_SCALE
    was_training, wrong, risen = model.training, list(flipped), False
    model.train()
    try:
        while report.steps < max_steps and (wrong or risen):
            order = list(wrong or flipped)  # the flipped examples stay the retain stream while the forget one falls
            rng.shuffle(order)
            for start in range(0, len(order), size):
                if report.steps >= max_steps:
                    break
                first = report.steps * size
                picked = [forget_order[(first + i) % len(forget)] for i in range(size)]
                _step(trainer, model, {"forget": _collated(trainer, forget, picked),
                                       "retain": _collated(trainer, retain, order[start:start + size])})
                report.steps += 1
            wrong = _wrong_among(trainer, model, retain, flipped)
            risen = not wrong and _forget_above(trainer, before)  # read only once it can end the repair
    finally:
        model.train(was_training)
        for group, rate in zip(optimizer.param_groups, rates):
            group["lr"] = rate


def _forget_above(trainer, before: dict[str, float]) -> bool:
    """The forget sample's accuracy or mean true-label probability is above its reading at the stop."""
    out = trainer._verdicts(trainer._check_samples()[0])
    accuracy, probability = trainer._percent(out["correct"]), float(out["p_true"].mean())
    return accuracy > before.get("forget_accuracy", math.inf) or probability > before.get("forget_probability",
                                                                                          math.inf)


def _step(trainer, model, batch: dict) -> None:
    """One optimizer step of the method's loss through the run's own clipping and step hooks (projection included)."""
    optimizer, args, hooks = trainer.optimizer, trainer.args, trainer._step_hooks()
    optimizer.zero_grad(set_to_none=True)
    for hook in hooks.begin:
        hook()
    if args.freeze_bias_and_norm:
        batch_norms_in_eval_mode(model)
    trainer.method.compute_loss(trainer, model, batch).backward()
    if args.max_grad_norm and args.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], args.max_grad_norm)
    for hook in hooks.before:
        hook()
    optimizer.step()
    for hook in hooks.after:
        hook()
    optimizer.zero_grad(set_to_none=True)


def _forget_rose(control, before: dict[str, float], after: dict[str, float]) -> str:
    """What rose past the higher of its reading at the stop and its target by more than the sample's resolution
    (a mean probability's spread is at most a Bernoulli's of the same mean: the accuracy's resolution, scaled)."""
    keys = ["forget_accuracy"] + ([f"forget_{control.settings.confidence_key}"]
                                  if control.settings.confidence_key else [])
    risen = []
    for key in keys:
        if key not in before:
            continue
        target = control.target_validation(control.outcome.initial, key.replace("forget_", "validation_", 1))
        limit = max(before[key], target) + reading_resolution(before, key, target)
        if not after.get(key, math.nan) <= limit:
            risen.append(f"{key} {after.get(key, math.nan):.3g} above {limit:.3g}")
    return "; ".join(risen)


def _utility_lost(before: dict[str, float], after: dict[str, float], tolerance: float) -> str:
    """A retain or validation sample fell by more than the guard's tolerance."""
    fell = [f"{key} {before[key]:.1f} -> {after.get(key, math.nan):.1f}"
            for key in ("retain_accuracy", "validation_accuracy")
            if key in before and not after.get(key, math.nan) >= before[key] - tolerance]
    return "; ".join(fell)


def _scanned(retain, seed: int):
    """The kept examples read: all of them, or a seeded ``SCAN_LIMIT`` of a larger set."""
    if len(retain) <= SCAN_LIMIT:
        return retain
    generator = torch.Generator().manual_seed(seed)
    return _rows(retain, torch.randperm(len(retain), generator=generator)[:SCAN_LIMIT].sort().values.tolist())


def _right_among(trainer, model, rows, indices: list[int]) -> list[int]:
    """Those of ``indices`` that ``model`` classifies right."""
    wrong = set(_wrong_among(trainer, model, rows, indices))
    return [i for i in indices if i not in wrong]


def _wrong_among(trainer, model, rows, indices: list[int] | None = None) -> list[int]:
    """Those of ``indices`` (None: every row) that ``model`` classifies wrong."""
    if indices is None:
        indices, subset = list(range(len(rows))), rows
    elif not indices:
        return []
    else:
        subset = _rows(rows, indices)
    out = _outputs(trainer, model, subset)
    wrong = (out["logits"].argmax(-1) != out["labels"]).tolist()
    return [i for i, w in zip(indices, wrong) if w]


def _outputs(trainer, model, rows) -> dict[str, torch.Tensor]:
    return collect_outputs(model, rows, collate_fn=trainer.base_collator, batch_size=trainer._eval_batch_size(rows),
                           device=trainer.args.device)


def _collated(trainer, rows, indices: list[int]) -> dict:
    batch = trainer.base_collator([rows[i] for i in indices])
    return {k: v.to(trainer.args.device) if torch.is_tensor(v) else v for k, v in batch.items()}


def _rows(dataset, indices: list[int]):
    """Those rows of a datasets.Dataset or of an in-memory copy (``data/memory.py``), in order."""
    return dataset.select(indices) if hasattr(dataset, "select") else Subset(dataset, indices)
