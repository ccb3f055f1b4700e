"""The stop rule's progress on the Trainer's bar: what the rule compares, where it must get, and an ETA at its pace.

A run stops when its rule holds, often after a tenth of its step budget, so the bar's own "time left" (the budget's)
misleads: a run that ends in 30 s showed "41:26 left". While a stop rule is on, the bar drops that estimate and
its postfix shows, after every check, the measure against its target and, once two checks give a pace, about how
many steps and seconds remain at that pace.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from transformers import TrainerCallback

NO_BUDGET_ETA = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


class RuleProgress(TrainerCallback):
    """Writes the stop rule's progress into the Trainer's progress bar (found through ``bar``) after each check."""

    def __init__(self, control: Any, bar: Callable[[], Any]):
        self.control = control  # an UnlearningControl: its settings, the run's initial metrics, the rule's target
        self.bar = bar
        self.last: tuple[int, float, float] | None = None  # (step, measure, time) at the previous check
        self.formatted: Any = None  # the bar already given the rule's format

    def _rule(self) -> tuple[str, str, float] | None:
        """(control log key, words, target) of the measure the rule waits on, or None when no rule is on."""
        s = self.control.settings
        if s.rule == "forget_below_validation":
            return f"control_{s.forget_key}", s.compared, self.control.target_validation(self.control.outcome.initial)
        if s.rule == "class_removal":
            return "control_forget_accuracy", "forget accuracy", s.class_forget_target
        if s.rule == "poison_removed":
            return "control_forget_accuracy", "poisoned labels kept", s.poison_forget_target
        return None

    def on_train_begin(self, args, state, control, **kwargs):
        self.last = None
        self.formatted = None

    def _reformat(self, bar: Any, rule: tuple[str, str, float]) -> None:
        """Once per bar (it is made after this callback's ``on_train_begin``): no budget ETA, the rule instead."""
        if self.formatted is not bar:
            self.formatted = bar
            bar.bar_format = NO_BUDGET_ETA
            bar.set_postfix_str(f"stop rule: {rule[1]} to reach {rule[2]:.1f}; waiting for the first check")

    def on_step_end(self, args, state, control, **kwargs):
        if self.formatted is not None:  # formatted once; each check's log updates the postfix
            return
        rule, bar = self._rule(), self.bar()
        if rule is not None and bar is not None:
            self._reformat(bar, rule)

    def on_log(self, args, state, control, logs=None, **kwargs):
        rule, bar = self._rule(), self.bar()
        if rule is None or bar is None or not logs or rule[0] not in logs:
            return
        self._reformat(bar, rule)
        key, words, target = rule
        value, now = float(logs[key]), time.perf_counter()
        text = f"{words} {value:.1f} -> {target:.1f}" + self._eta(state.global_step, value, target, now)
        self.last = (state.global_step, value, now)
        bar.set_postfix_str(text)

    def _eta(self, step: int, value: float, target: float, now: float) -> str:
        if value <= target:
            return ", reached"
        if self.last is None or step <= self.last[0] or math.isnan(target):
            return ""
        last_step, last_value, last_time = self.last
        pace = (last_value - value) / (step - last_step)  # how much the measure falls per step
        if pace <= 0:
            return " (not falling at the last check)"
        steps_left = max(value - target, 0.0) / pace
        seconds = steps_left * (now - last_time) / (step - last_step)
        return f", ~{math.ceil(steps_left)} steps (~{seconds:.0f} s) at this pace"
