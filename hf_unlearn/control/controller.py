"""Step-level control of an unlearning run: checks, a utility guard with backtracking, stop rules.

Epoch-level checks are too coarse: one epoch of PGU at SGD 0.5 was enough to wreck a BatchNorm
ResNet. Every ``check_every`` optimizer steps this callback measures forget, retain-sample and
validation accuracy on small cached samples (one batched pass each) and then:

1. **Guard.** If retain-sample or validation accuracy (kept classes for class removal) fell more than
   ``tolerance`` points below the original's, the step was too large: the weights go back to the last
   good state, every learning rate is multiplied by ``shrink`` and the run continues (backtracking;
   the tolerance is at least three examples' worth of a small sample). After ``max_backtracks`` the run
   stops at the best good state. No architecture-specific step size is needed: the guard finds one.
2. **Stop rules**, judged only on good states. Sample removal: stop once forget accuracy reaches (falls
   to or below) the original model's validation accuracy, or the forget set's mean true-label
   probability reaches the original's on validation data, which is what a confidence attacker reads
   (both measured before the first step: a retrained model treats the forgotten examples about as it
   treats held-out data, and a target that falls with a damaged model would be chased instead of
   reached; by default read on the validation examples nearest the forget set when that is higher:
   training/neighbour_target.py). If the measure that crossed lies below its target by more than the
   samples' resolution, the last steps overshot: the weights go back to the previous good state (the start
   too) and the step is halved (up to ``max_overshoots`` times, a bisection towards the crossing);
   otherwise, or after that, the closer of the two is kept, unless it is the starting state (no removal
   at all; both passed the guard, so a collapsed state is never kept).
   Class removal: stop once the forgotten classes are no longer predicted *and* their mean probability
   on the forget set is below ``class_probability``, which is how a model that never saw them treats them.
3. **Step growth** (sample removal, methods that ask for it; see step_growth.py): a confident forget
   set's gradient vanishes and a fixed step crawls; while the target is many checks away at the last
   check's pace the step grows (x4 at most), near it a grown step comes back down, and never after a
   rollback or an overshoot: those found the step's ceiling.

What happened is kept in ``RunOutcome``: a run that made no step, ended at its starting weights,
ended non-finite, or stopped at the original state is ``unlearned=False``, and the trainer neither
records the request in the ledger nor lets the card claim a removal.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from functools import partial

import torch
from transformers import TrainerCallback

from .state import ControlSettings, RunOutcome, copy_weights, restore_weights, same_weights, weights_finite
from .step_growth import growth_factor
from .stop_rules import class_gone, nothing_to_unlearn, reading_resolution, sample_target, target_words

logger = logging.getLogger(__name__)
MIN_SPAN = 4  # steps a check may wait when it costs more than they do, however short an epoch is


def _utility(metrics: dict[str, float]) -> dict[str, float]:
    keys = ("retain_accuracy", "validation_accuracy_kept", "validation_accuracy")
    found = {k: metrics[k] for k in keys if k in metrics and not math.isnan(metrics[k])}
    if "validation_accuracy_kept" in found:
        found.pop("validation_accuracy", None)
    return found


class UnlearningControl(TrainerCallback):
    """Checks every few steps; guards utility by backtracking; applies the stop rule on good states."""

    def __init__(
        self,
        settings: ControlSettings,
        measure: Callable[[], dict[str, float]],
        log: Callable[[dict], None] | None = None,
        closer_look: Callable[[dict[str, torch.Tensor], dict[str, float], list[str]], list[str]] | None = None,
    ):
        self.settings = settings
        self.measure = measure  # forget_accuracy, forget_probability, retain_accuracy, validation_accuracy(_kept)
        # (start weights, this check's metrics, its alarms) -> the alarms a larger, paired sample confirms (_damage)
        self.closer_look = closer_look
        self.log = log or (lambda metrics: None)
        self.outcome = RunOutcome()
        self.original_metrics: dict[str, float] | None = None  # set by the trainer before any setup
        # a series of requests: the model before the first one, measured on this run's samples (see on_train_begin)
        self.baseline_metrics: dict[str, float] | None = None
        self.setup_changed_weights = False
        self.resume_state: dict | None = None  # from a checkpoint (``state_dict``), restored at train begin

    def state_dict(self) -> dict:
        """Everything a resumed run needs to decide as the uninterrupted one would (saved in checkpoints)."""
        return {
            "outcome": self.outcome.to_dict(),
            "start": self.start,
            "reference": self.reference,
            "good": list(self.good),
            "previous_good": list(self.previous_good) if self.previous_good else None,
            "last_checked": self.last_checked,
        }

    def _restore_state(self, state: dict) -> None:
        self.outcome = RunOutcome(**state["outcome"])
        self.start = state["start"]
        self.reference = state["reference"]
        self.good = tuple(state["good"])
        self.previous_good = tuple(state["previous_good"]) if state["previous_good"] else None
        self.last_checked = state["last_checked"]
        self.original_metrics = None
        logger.info("Resumed the unlearning control at step %d (%d backtracks so far)", self.last_checked,
                    self.outcome.backtracks)

    # ------------------------------------------------------------------ helpers
    def _interval(self, state) -> int:
        """Two checks per epoch; up to one per epoch when a check costs more than the steps between.

        A check is forward-only over ``check_examples``; a step is a forward and a backward (about three
        forwards) over ``examples_per_step``. The rule uses these counts, not measured times, so a seeded
        run checks at the same steps on any machine. ``check_density`` multiplies the number of checks
        (a check may then cost that many steps): PGU's class removal with the class's output rows free
        is done within an epoch, and every step past that point only costs kept accuracy (fidelity suite: a ViT
        lost 1.4 more points of kept validation accuracy in the 10 steps between two checks). It is not
        the default for every method: the baselines, checked 4x as often, met more noisy dips, spent
        their backtracks and ended worse (EUPMU on the ResNet: Avg. Gap 1.32 -> 3.8).
        A costly check may wait up to ``MIN_SPAN`` steps even when an epoch is shorter: ten forget texts
        are one step an epoch, and SmolLM2 spent 5 of every 6 seconds checking (benchmarks/lm_facts.py).
        """
        if self.settings.check_every > 0:
            return self.settings.check_every
        per_epoch = max(1, math.ceil(state.max_steps / max(state.num_train_epochs, 1)))
        density = max(1, self.settings.check_density)
        base = max(1, math.ceil(per_epoch / (2 * density)))
        affordable = math.ceil(self.settings.check_examples / (3 * density * max(1, self.settings.examples_per_step)))
        return max(base, min(affordable, max(per_epoch, MIN_SPAN)))

    def _too_damaged(self, metrics: dict[str, float]) -> list[str]:
        """Utility metrics that fell more than the tolerance (at least three examples of the sample)."""
        start = _utility(self.reference)
        now = _utility(metrics)
        damaged = []
        for key in start:
            count = metrics.get(f"{key}_count", 0)
            allowed = max(self.settings.tolerance, 300.0 / count if count else 0.0)
            if key in now and now[key] < start[key] - allowed:
                damaged.append(f"{key} {now[key]:.1f} < {start[key]:.1f} - {allowed:.3g}")
        return damaged

    def _damage(self, metrics: dict[str, float]) -> list[str]:
        """``_too_damaged`` on the check's small samples, each alarm re-read by ``closer_look`` (when given) on a
        larger sample paired against the start: 128 retain examples resolve 3 points as 4 examples, and a memorizing
        ResNet spent its backtracks on a 3.1-point dip where the whole retain set had lost 1.7. Only where the start
        is what the guard is held to (not in a series of requests, nor after a setup that moved the weights)."""
        damage = self._too_damaged(metrics)
        plain = self.baseline_metrics is None and not self.setup_changed_weights
        if not damage or self.closer_look is None or not plain:
            return damage
        self.outcome.closer_looks += 1
        confirmed = self.closer_look(self.start, metrics, damage)
        if not confirmed:
            self.outcome.cleared_alarms += 1
            logger.info("Utility guard: %s on the check's sample, not confirmed on a larger one; no rollback",
                        "; ".join(damage))
        return confirmed

    def _scale_step(self, optimizer, lr_scheduler, s: float) -> None:
        for group in optimizer.param_groups:
            group["lr"] *= s
        if lr_scheduler is not None and hasattr(lr_scheduler, "base_lrs"):
            lr_scheduler.base_lrs = [lr * s for lr in lr_scheduler.base_lrs]
        self.outcome.learning_rate_scale *= s

    # ------------------------------------------------------------------ Trainer events
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        if self.resume_state is not None:
            self._restore_state(self.resume_state)
            self.resume_state = None
            return
        self.outcome = RunOutcome(reason="running")
        self.start = copy_weights(model)
        # the original's utility, measured before a method's setup may have changed the weights (Fisher's noise)
        self.outcome.initial = self.original_metrics if self.original_metrics is not None else self.measure()
        self.original_metrics = None
        # a method that changes the weights before its first step (Fisher's noise) may start below the
        # original; the guard then holds the run to where it started, so the repair can proceed
        self.reference = dict(self.outcome.initial)
        if self.setup_changed_weights:
            started_at = self.measure()
            self.reference = {k: min(v, started_at.get(k, v)) for k, v in self.reference.items()}
        start_metrics = dict(self.reference)  # what the start weights measure (before any baseline below)
        if self.baseline_metrics is not None:
            # held to the model before the first request, not to this one: otherwise each request may lose up to
            # the tolerance and the losses add up (10 requests on a ResNet: retain accuracy 98 -> 80)
            self.reference.update(
                {k: v for k, v in _utility(self.baseline_metrics).items() if k in _utility(self.reference)}
            )
        self.log({f"control_{k}": v for k, v in self.outcome.initial.items() if not k.endswith(("_count", "_units"))})
        self.good = (start_metrics, self.start)  # the last state that passed the guard
        self.previous_good = None
        self.last_checked = 0

    def target_validation(self, initial: dict[str, float], key: str | None = None) -> float:
        """The sample-removal target: the validation accuracy (or ``key``) of the model before this request (or
        the series), or its neighbour reading when measured (``training/neighbour_target.py``)."""
        return sample_target(self.baseline_metrics or initial, key or self.settings.validation_key)

    def _target_name(self, initial: dict[str, float]) -> str:
        return target_words(self.baseline_metrics or initial, self.settings)

    def nothing_to_unlearn(self, metrics: dict[str, float]) -> str | None:
        """Why no step should be taken at all (the rule already holds before the first step), or None."""
        return nothing_to_unlearn(self.settings, metrics, self.baseline_metrics)

    def on_step_end(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        self.outcome.steps = state.global_step
        if state.global_step - self.last_checked < self._interval(state) and state.global_step < state.max_steps:
            return
        self._check(state, control, optimizer, lr_scheduler)

    def _check(self, state, control, optimizer, lr_scheduler) -> None:
        metrics = self.measure()
        self.last_checked = state.global_step
        self.outcome.checks += 1
        self.log({f"control_{k}": v for k, v in metrics.items() if not k.endswith(("_count", "_units"))})
        damage = self._damage(metrics) if weights_finite(self.model) else ["non-finite weights"]
        if damage:
            restore_weights(self.model, self.good[1], optimizer)
            if self.outcome.backtracks >= self.settings.max_backtracks:
                self._stop(
                    control,
                    "guard",
                    f"utility guard: still {damage[0]} after {self.outcome.backtracks} "
                    "backtracks; kept the last good state",
                )
                return
            self._scale_step(optimizer, lr_scheduler, self.settings.shrink)
            self.outcome.backtracks += 1
            logger.warning(
                "Utility guard: %s; rolled back and scaled the learning rate by %.3g",
                "; ".join(damage),
                self.outcome.learning_rate_scale,
            )
            return
        # the state before the previous one goes first: at most three copies live (start, previous, this one)
        self.previous_good = self.good
        self.good = (metrics, copy_weights(self.model, like=self.good[1]))  # whole weights under ZeRO-3
        self._apply_rule(metrics, control, optimizer, lr_scheduler)

    def _apply_rule(self, metrics: dict[str, float], control, optimizer=None, lr_scheduler=None) -> None:
        rule = self.settings.rule
        if rule == "forget_below_validation":
            # the original's validation accuracy, not the current one: a step that damages the model lowers
            # both, and a target that falls with the forget accuracy is chased instead of reached
            validation = self.target_validation(self.outcome.initial)
            key = self.settings.forget_key
            by_accuracy = self._reached(metrics[key], validation)
            if by_accuracy and self._went_back(metrics, key, validation, optimizer, lr_scheduler):
                return
            words = self.settings
            if by_accuracy:
                self._stop(control, "rule", f"{words.compared} reached the original's "
                           f"{self._target_name(self.outcome.initial)}")
            elif self._confidence_reached(metrics):
                if self._confidence_went_back(metrics, optimizer, lr_scheduler):
                    return
                self._stop(control, "rule", "forget confidence (mean true-label probability) reached the "
                           "original's on validation data")
            elif optimizer is not None:
                self._grow_if_stalled(metrics, optimizer, lr_scheduler)
        elif rule == "class_removal" and class_gone(self.settings, metrics):
            before = self.outcome.initial.get("forget_accuracy", math.nan)
            self._stop(control, "rule", "the forgotten classes are no longer predicted" if not (
                before <= self.settings.class_forget_target) else "the forgotten classes' mean probability fell "
                f"to {metrics.get('forget_probability', math.nan):.3f} (their accuracy was already {before:.1f} % "
                "before the first step)")
        elif rule == "poison_removed" and metrics["forget_accuracy"] <= self.settings.poison_forget_target:
            self._stop(control, "rule", "the poisoned examples no longer get their poisoned labels")

    def _grow_if_stalled(self, metrics: dict[str, float], optimizer, lr_scheduler) -> None:
        """A stalled sample removal gets a larger step, a grown one near its target a smaller one (step_growth.py)."""
        s, outcome = self.settings, self.outcome
        if s.growth <= 1.0 or outcome.backtracks or outcome.overshoots or self.previous_good is None:
            return
        measure = f"forget_{s.confidence_key}" if s.confidence_key else s.forget_key
        target = self.target_validation(outcome.initial, measure.replace("forget_", "validation_", 1))
        start, before, now = (m.get(measure, math.nan) for m in (outcome.initial, self.previous_good[0], metrics))
        scale = 1.0 if s.confidence_key else 100.0  # a causal LM's likelihood is in percent
        factor = growth_factor(s, outcome, start=start, before=before, now=now, target=target, scale=scale)
        if factor != 1.0:
            self._scale_step(optimizer, lr_scheduler, factor)
            if factor > 1.0:
                outcome.growths += 1
            logger.info("Sample removal at forget %s %.4g -> %.4g (target %.4g): learning rate scaled by %.3g",
                        measure.removeprefix("forget_"), before, now, target, outcome.learning_rate_scale)

    @staticmethod
    def _reached(forget: float, validation: float) -> bool:
        """Sample removal's target: at or below the original's validation measure.

        Equality is the target itself (a retrained model's forget accuracy is, in expectation, its held-out
        accuracy), and a narrow crossing already went back to the equal state: stopping only strictly below
        ran past it first (MiniLM random request: 21 steps and 3 checks for what 7 steps and 1 check reach).
        """
        return forget <= validation

    def _confidence_reached(self, metrics: dict[str, float]) -> bool:
        """The forget set's mean true-label probability is down to the original's on validation data (and was
        above it at the start): a retrained model is about as sure of the forgotten examples as of held-out ones."""
        name = self.settings.confidence_key
        if not name:
            return False
        target = self.target_validation(self.outcome.initial, f"validation_{name}")
        start = self.outcome.initial.get(f"forget_{name}", math.nan)
        now = metrics.get(f"forget_{name}", math.nan)
        return start > target and now <= target  # False whenever one is missing (NaN)

    def _confidence_went_back(self, metrics: dict[str, float], optimizer, lr_scheduler) -> bool:
        """A confidence crossing is judged as an accuracy one: a step that took the forget set's mean probability
        far past its target goes back and halves (TREC user's records: 0.83 -> 0.71 against 0.81 in one check)."""
        key = f"forget_{self.settings.confidence_key}"
        target = self.target_validation(self.outcome.initial, key.replace("forget_", "validation_", 1))
        return self._went_back(metrics, key, target, optimizer, lr_scheduler)

    def _went_back(self, metrics: dict[str, float], key: str, validation: float, optimizer, lr_scheduler) -> bool:
        """The crossing overshot: True after going back to the previous good state at half the step (bisection).

        A crossing farther below the target than the samples resolve goes back even when the state before it was
        farther above: the crossing lies between the two, and from the start that is the only way to land nearer
        (a 1 % request on a memorizing ResNet, 20 images: forget accuracy 100 -> 65 against 80.5 in the first
        check, where retraining leaves 85; halved, 80 and Avg. Gap 10.76 -> 5.48, doing nothing 9.08).
        Otherwise a narrow crossing (or one out of halvings) may still keep the previous state when it was closer,
        never the start (no removal); the caller then stops.
        """
        previous = self.previous_good[0] if self.previous_good else None
        overshot = previous is not None and abs(previous[key] - validation) < abs(metrics[key] - validation)
        far = validation - metrics[key] > reading_resolution(metrics, key, validation)
        halvings_left = self.outcome.overshoots < self.settings.max_overshoots
        if previous is not None and far and optimizer is not None and halvings_left:
            restore_weights(self.model, self.previous_good[1], optimizer)
            self.good, self.previous_good = self.previous_good, None
            self._scale_step(optimizer, lr_scheduler, self.settings.shrink)
            self.outcome.overshoots += 1
            logger.info(
                "Overshot the sample-removal target (%s %.4g vs validation %.4g); back to the previous "
                "good state with the learning rate scaled by %.3g",
                key, metrics[key], validation, self.outcome.learning_rate_scale,
            )
            return True
        if overshot and not same_weights(self.previous_good[1], self.start):
            restore_weights(self.model, self.previous_good[1], optimizer)
            self.good = self.previous_good
        return False

    def _stop(self, control, by: str, reason: str) -> None:
        control.should_training_stop = True
        self.outcome.stopped_by = by
        self.outcome.reason = reason
        logger.info("Unlearning stopped: %s", reason)

    def on_train_end(self, args, state, control, **kwargs):
        end = copy_weights(self.model, like=self.good[1], trainable_too=True)  # a run ending on a check: no copy
        finite = all(torch.isfinite(v).all() for v in end.values())
        if not finite:  # never hand back NaN weights: the last good state is finite by construction
            restore_weights(self.model, self.good[1])
            end = self.good[1]
        elif self.last_checked != state.global_step:  # steps since the last check get one more look
            metrics = self.measure()
            if self._damage(metrics):
                restore_weights(self.model, self.good[1])
                end = self.good[1]
            else:
                self.good = (metrics, end)
        # otherwise the weights are the last good state's (the run ended on a check, or a stop or rollback
        # restored it) and its metrics describe them: no extra pass
        self.outcome.final = dict(self.good[0])
        change = sum(float((end[k].double() - v.double()).pow(2).sum()) for k, v in self.start.items())
        norm = sum(float(v.double().pow(2).sum()) for v in self.start.values())
        self.outcome.weight_change = math.sqrt(change / norm) if norm > 0 else math.sqrt(change)
        if state.global_step == 0:
            self.outcome.unlearned, self.outcome.reason = False, "no optimizer step was taken"
        elif self.outcome.weight_change == 0.0:
            self.outcome.unlearned = False
            self.outcome.reason = f"the run ended at the starting weights ({self.outcome.reason})"
        else:
            self.outcome.unlearned = True
            if self.outcome.stopped_by == "budget":
                self.outcome.reason = "the step budget ended"
        if not self.outcome.unlearned:
            logger.warning("NOT UNLEARNED: %s. The request is not recorded.", self.outcome.reason)
        elif self.settings.rule != "none" and self.outcome.stopped_by != "rule":
            target = partial(self.target_validation, self.outcome.initial)
            self.outcome.incomplete = self.settings.unmet(self.outcome.final, target)
            logger.warning("REMOVAL INCOMPLETE: %s (%s).", self.outcome.incomplete, self.outcome.reason)

