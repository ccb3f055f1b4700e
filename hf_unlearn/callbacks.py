"""Callbacks that plug unlearning into the Trainer's loop without touching the loop itself.

``StepHooksCallback`` wraps every optimizer step (transformers calls ``on_pre_optimizer_step``
after gradients are accumulated, all-reduced and clipped, and ``on_optimizer_step`` right after
``optimizer.step()``): the protected weights are snapshotted before and the update projected after.
``StopRuleCallback`` implements the reference stop rules from the accuracies logged at evaluation.
Both receive values (callables, a resolved rule), never the trainer, so they can be tested alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import TrainerCallback

logger = logging.getLogger(__name__)
StepHook = Callable[[], None]


class StepHooksCallback(TrainerCallback):
    """Runs ``before`` hooks on the final gradient and ``after`` hooks on the updated weights, in order."""

    def __init__(self, before: list[StepHook], after: list[StepHook]):
        self.before = before
        self.after = after

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for hook in self.before:
            hook()

    def on_optimizer_step(self, args, state, control, **kwargs):
        for hook in self.after:
            hook()


@dataclass
class StopRule:
    """A resolved stop rule: ``kind`` is forget_below_validation, class_removal or none."""

    kind: str = "none"
    class_forget_target: float = 1.0
    class_retain_drop: float = 5.0


def resolve_stop_rule(requested: str, scenario: str, has_eval_dataset: bool) -> str:
    """``auto`` picks the rule by scenario; a rule that compares with validation needs an eval set."""
    if requested == "auto":
        if not has_eval_dataset:
            logger.warning("No eval_dataset: the stop rule is off and every epoch runs.")
            return "none"
        return "class_removal" if scenario == "class" else "forget_below_validation"
    if requested != "none" and not has_eval_dataset:
        raise ValueError(f"stop_rule={requested!r} compares with validation accuracy: pass eval_dataset=...")
    return requested


class StopRuleCallback(TrainerCallback):
    """Stop when the forget set looks like unseen data, judged only from what a user has.

    ``forget_below_validation`` (sample removal, PGU reference): stop once forget accuracy falls
    below validation accuracy, keeping the better of the last two evaluations (the one whose forget
    accuracy is closer to validation accuracy). ``class_removal``: stop once the forgotten classes'
    accuracy reaches ``class_forget_target`` or validation accuracy on the kept classes has dropped
    ``class_retain_drop`` points below where it started.
    """

    def __init__(self, rule: StopRule, evaluate: Callable[[], dict]):
        self.rule = rule
        self.evaluate = evaluate  # the starting evaluation both rules compare with
        self.initial: dict[str, float] | None = None
        self.previous: tuple[dict[str, float], dict[str, torch.Tensor]] | None = None
        self.stopped_at: float | None = None
        self.model: nn.Module | None = None
        self.in_train = False

    @staticmethod
    def _trainable(model: nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}

    @staticmethod
    def _restore(model: nn.Module, weights: dict[str, torch.Tensor]) -> None:
        params = dict(model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.model = model
        self.initial, self.previous, self.stopped_at = None, None, None
        self.in_train = True
        if self.rule.kind != "none":
            self.evaluate()

    def on_train_end(self, args, state, control, **kwargs):
        self.in_train = False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.rule.kind == "none" or not metrics or not self.in_train:
            return  # evaluations after training (e.g. the recipe's final one) decide nothing
        forget = metrics.get("eval_forget_accuracy")
        if self.initial is None:
            self.initial = dict(metrics)
        if self.rule.kind == "forget_below_validation":
            validation = metrics["eval_test_accuracy"]
            if forget < validation and state.global_step > 0:
                self._stop(control, state)
                if self.previous is not None:
                    previous_metrics, previous_weights = self.previous
                    if abs(previous_metrics["eval_forget_accuracy"] - previous_metrics["eval_test_accuracy"]) < abs(
                        forget - validation
                    ):
                        self._restore(self.model, previous_weights)
                        logger.info("Stop rule: restored the previous evaluation's weights (closer to validation).")
            else:
                self.previous = (dict(metrics), self._trainable(self.model))
        elif self.rule.kind == "class_removal":
            kept = metrics.get("eval_test_accuracy_kept_classes", math.nan)
            start = self.initial.get("eval_test_accuracy_kept_classes", math.nan)
            if state.global_step > 0 and (
                forget <= self.rule.class_forget_target or kept < start - self.rule.class_retain_drop
            ):
                self._stop(control, state)

    def _stop(self, control, state) -> None:
        control.should_training_stop = True
        self.stopped_at = state.epoch
        logger.info("Stop rule %s met at epoch %.2f", self.rule.kind, state.epoch or 0.0)
