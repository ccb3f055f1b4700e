"""Gradient ascent (GA, "NegGrad"): maximise the cross-entropy of the forget set.

Forget objective: −CE(forget). Protection: none (``gradient_ascent``) or the Core Gradient Space
(``ga_projected``: every applied update is projected away from the retain data's input space, as in
PGU, so only the forget objective changes). The loss is unbounded below: the stop rule, a small
learning rate and few epochs are what keep GA from destroying the model (Thudi et al., 2022;
Golatkar et al., CVPR 2020).
"""

from __future__ import annotations

from .base import UnlearningMethod, cross_entropy


class GradientAscent(UnlearningMethod):
    name = "gradient_ascent"
    default_overrides = {"optim": "adamw_torch", "learning_rate": 1e-4, "num_train_epochs": 5.0}

    def compute_loss(self, trainer, model, batch):
        return -cross_entropy(model, batch["forget"])


class GradientAscentProjected(GradientAscent):
    """GA whose updates avoid the Core Gradient Space (protection borrowed from PGU)."""

    name = "ga_projected"
    uses_projection = True
    trains_unprotected = False
    default_overrides = {"optim": "adamw_torch", "learning_rate": 5e-3, "num_train_epochs": 10.0}
