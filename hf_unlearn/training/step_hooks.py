"""The callback that plugs update projection into the Trainer's loop without touching the loop itself.

``StepHooksCallback`` wraps every optimizer step (transformers calls ``on_pre_optimizer_step``
after gradients are accumulated, all-reduced and clipped, and ``on_optimizer_step`` right after
``optimizer.step()``): the protected weights are snapshotted before and the update projected after.
It receives callables, never the trainer, so it can be tested alone. The stop rules and the utility
guard live in ``hf_unlearn.control``.
"""

from __future__ import annotations

from collections.abc import Callable

from transformers import TrainerCallback

StepHook = Callable[[], None]


class StepHooksCallback(TrainerCallback):
    """Runs ``before`` hooks on the final gradient and ``after`` hooks on the updated weights, in order."""

    def __init__(self, before: list[StepHook], after: list[StepHook], begin: list[StepHook] | None = None):
        self.before = before
        self.after = after
        self.begin = begin or []  # before the first micro-batch of the step (an engine may step inside backward)

    def on_step_begin(self, args, state, control, **kwargs):
        for hook in self.begin:
            hook()

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for hook in self.before:
            hook()

    def on_optimizer_step(self, args, state, control, **kwargs):
        for hook in self.after:
            hook()
