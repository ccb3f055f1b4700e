"""PGU with a retain loss: PGU's projected forget objective plus cross-entropy on retained examples.

PGU protects what the retain data's layer inputs span, up to the energy share ``gamma``; the rest
(1 − γ of it) is exposed, and on a BatchNorm ResNet that exposure alone cost several points of
retain accuracy (issue 9). When the user has retain examples, their cross-entropy pulls the model
back along exactly those exposed directions: the update is still projected, so the protected part
stays untouched. L = PGU(forget) + ``pgu_retain_weight``·CE(retain).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import cross_entropy
from .pgu import PGU, PGUConfig


@dataclass
class PGURetainConfig(PGUConfig):
    pgu_retain_weight: float = field(default=1.0, metadata={"help": "Weight of the retain cross-entropy."})

    def __post_init__(self):
        super().__post_init__()
        if self.pgu_retain_weight < 0:
            raise ValueError(f"pgu_retain_weight must be non-negative, got {self.pgu_retain_weight}")


class PGURetain(PGU):
    name = "pgu_retain"
    config_class = PGURetainConfig
    needs_retain = True

    def compute_loss(self, context, model, batch):
        forget = super().compute_loss(context, model, batch)
        retain = cross_entropy(model, batch["retain"])
        self.track("retain_loss", retain.detach())
        return forget + self.config.pgu_retain_weight * retain
