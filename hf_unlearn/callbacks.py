"""Callbacks that plug unlearning into the Trainer's loop without touching the loop itself.

``StepHooksCallback`` wraps every optimizer step (transformers calls ``on_pre_optimizer_step``
after gradients are accumulated, all-reduced and clipped, and ``on_optimizer_step`` right after
``optimizer.step()``): the protected weights are snapshotted before and the update projected after.
``StopRuleCallback`` implements the reference stop rules from the accuracies logged at evaluation.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
from transformers import TrainerCallback

if TYPE_CHECKING:
    from .trainer import UnlearningTrainer

logger = logging.getLogger(__name__)


class StepHooksCallback(TrainerCallback):
    def __init__(self, trainer: UnlearningTrainer):
        self.trainer = trainer

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.trainer.method.before_optimizer_step(self.trainer, self.trainer.model)
        if self.trainer.projection is not None:
            self.trainer.projection.snapshot()

    def on_optimizer_step(self, args, state, control, **kwargs):
        if self.trainer.projection is not None:
            self.trainer.projection.project()
        self.trainer.method.after_optimizer_step(self.trainer, self.trainer.model)


class StopRuleCallback(TrainerCallback):
    """Stop when the forget set looks like unseen data, judged only from what a user has.

    ``forget_below_validation`` (sample removal, PGU reference): stop once forget accuracy falls
    below validation accuracy, keeping the better of the last two evaluations (the one whose forget
    accuracy is closer to validation accuracy). ``class_removal``: stop once the forgotten classes'
    accuracy reaches ``class_forget_target`` or validation accuracy on the kept classes has dropped
    ``class_retain_drop`` points below where it started.
    """

    def __init__(self, trainer: UnlearningTrainer):
        self.trainer = trainer
        self.rule = "none"  # resolved at train begin, once the Trainer is fully built
        self.initial: dict[str, float] | None = None
        self.previous: tuple[dict[str, float], dict[str, torch.Tensor]] | None = None
        self.stopped_at: float | None = None

    @staticmethod
    def _resolve(trainer: UnlearningTrainer) -> str:
        args = trainer.args
        rule = args.stop_rule
        if rule == "auto":
            rule = "class_removal" if trainer.scenario == "class" else "forget_below_validation"
            if trainer.eval_dataset is None:
                logger.warning("No eval_dataset: the stop rule is off and all %s epochs run.", args.num_train_epochs)
                rule = "none"
        elif rule != "none" and trainer.eval_dataset is None:
            raise ValueError(f"stop_rule={rule!r} compares with validation accuracy: pass eval_dataset=...")
        return rule

    def _trainable(self) -> dict[str, torch.Tensor]:
        model = self.trainer.model
        return {n: p.detach().to("cpu", copy=True) for n, p in model.named_parameters() if p.requires_grad}

    def _restore(self, weights: dict[str, torch.Tensor]) -> None:
        params = dict(self.trainer.model.named_parameters())
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)

    def on_train_begin(self, args, state, control, **kwargs):
        self.rule = self._resolve(self.trainer)
        if self.rule != "none":
            self.trainer.evaluate()  # the starting point: needed by both rules

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if self.rule == "none" or not metrics or not self.trainer.is_in_train:
            return  # evaluations after training (e.g. the recipe's final one) decide nothing
        forget = metrics.get("eval_forget_accuracy")
        if self.initial is None:
            self.initial = dict(metrics)
        if self.rule == "forget_below_validation":
            validation = metrics["eval_test_accuracy"]
            if forget < validation and state.global_step > 0:
                self._stop(control, state)
                if self.previous is not None:
                    previous_metrics, previous_weights = self.previous
                    if abs(previous_metrics["eval_forget_accuracy"] - previous_metrics["eval_test_accuracy"]) < abs(
                        forget - validation
                    ):
                        self._restore(previous_weights)
                        logger.info("Stop rule: restored the previous evaluation's weights (closer to validation).")
            else:
                self.previous = (dict(metrics), self._trainable())
        elif self.rule == "class_removal":
            kept = metrics.get("eval_test_accuracy_kept_classes", math.nan)
            start = self.initial.get("eval_test_accuracy_kept_classes", math.nan)
            if state.global_step > 0 and (
                forget <= args.class_forget_target or kept < start - args.class_retain_drop
            ):
                self._stop(control, state)

    def _stop(self, control, state) -> None:
        control.should_training_stop = True
        self.stopped_at = state.epoch
        logger.info("Stop rule %s met at epoch %.2f", self.rule, state.epoch or 0.0)
