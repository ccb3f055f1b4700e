"""What every unlearning method is: a forget objective plus a way to protect what must be kept.

A method sees one batch contract, ``{"forget": inputs, "retain": inputs}`` (retain only when the
method asks for it), and returns a scalar loss. Protection that acts on the update rather than the
loss (PGU's projection, EUPMU's multiplier) hooks into the step through ``after_optimizer_step``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from ..arguments import UnlearningArguments
    from ..trainer import UnlearningTrainer

LABEL_KEYS = ("labels", "label")


def split_labels(inputs: dict) -> tuple[dict, torch.Tensor]:
    """Model inputs without the labels, and the labels."""
    for key in LABEL_KEYS:
        if key in inputs:
            return {k: v for k, v in inputs.items() if k != key}, inputs[key]
    raise ValueError(f"A batch has no labels (keys: {sorted(inputs)}); unlearning needs labelled examples.")


def logits_and_labels(model: nn.Module, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    features, labels = split_labels(inputs)
    return model(**features).logits, labels


def cross_entropy(model: nn.Module, inputs: dict) -> torch.Tensor:
    logits, labels = logits_and_labels(model, inputs)
    return F.cross_entropy(logits, labels)


class UnlearningMethod(ABC):
    """Base class: override ``compute_loss``; set the class attributes that describe the method."""

    name: ClassVar[str] = ""
    needs_retain: ClassVar[bool] = False  # the batch carries a "retain" stream
    uses_projection: ClassVar[bool] = False  # updates are projected away from the Core Gradient Space
    trains_unprotected: ClassVar[bool] = True  # parameters outside the space may move

    def __init__(self, args: UnlearningArguments):
        self.args = args

    def setup(self, trainer: UnlearningTrainer) -> None:
        """Called once before the first step, after inputs were validated (e.g. copy a teacher)."""

    @abstractmethod
    def compute_loss(self, trainer: UnlearningTrainer, model: nn.Module, batch: dict) -> torch.Tensor:
        """The scalar loss of one micro-batch (a mean over its examples)."""

    def after_optimizer_step(self, trainer: UnlearningTrainer, model: nn.Module) -> None:
        """Called after every optimizer step (after any projection)."""

    def logs(self) -> dict[str, float]:
        """Method-specific values to log with the training loss (e.g. a multiplier)."""
        return {}
