"""Gradient ascent (GA, "NegGrad"): maximise the cross-entropy of the forget set.

Forget objective: −CE(forget). Protection: none (``gradient_ascent``) or the Core Gradient Space
(``ga_projected``: every applied update is projected away from the retain data's input space, as in
PGU, so only the forget objective changes). The loss is unbounded below: the stop rule, a small
learning rate and few epochs are what keep GA from destroying the model (Thudi et al., 2022;
Golatkar et al., CVPR 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import MethodConfig, Paper, UnlearningMethod, cross_entropy
from .pgu import PGUConfig


@dataclass
class GradientAscentConfig(MethodConfig):
    """Hyperparameters of gradient ascent (``method="gradient_ascent"``): none of its own.

    Args:
        (none): the training values are its only knobs (``hf-unlearn methods gradient_ascent`` lists its defaults).
    """

    training_defaults = {"optim": "adamw_torch", "learning_rate": 1e-4, "num_train_epochs": 5.0}
    paper = Paper(
        title="Unrolling SGD: Understanding Factors Influencing Machine Unlearning",
        authors="Thudi, Anvith and Deza, Gabriel and Chandrasekaran, Varun and Papernot, Nicolas",
        venue="IEEE EuroS&P",
        year=2022,
        arxiv="2109.13398",
    )


@dataclass
class GradientAscentProjectedConfig(MethodConfig):
    """Hyperparameters of projected gradient ascent (``method="ga_projected"``): none of its own.

    Args:
        (none): the training values and the space's threshold (``UnlearningArguments.gamma``) are its knobs
            (``hf-unlearn methods ga_projected`` lists its defaults).
    """

    training_defaults = {"optim": "adamw_torch", "learning_rate": 5e-3, "num_train_epochs": 10.0}
    paper = PGUConfig.paper  # the protection is PGU's


class GradientAscent(UnlearningMethod):
    """Ascent on the forget set's cross-entropy in ``compute_loss``; no protection (the stop rule and guard stop it)."""

    name = "gradient_ascent"
    config_class = GradientAscentConfig

    def compute_loss(self, context, model, batch):
        return -cross_entropy(model, batch["forget"])


class GradientAscentProjected(GradientAscent):
    """Gradient ascent whose applied updates are projected out of the Core Gradient Space, as PGU's are
    (``protection/space.py``)."""

    name = "ga_projected"
    config_class = GradientAscentProjectedConfig
    uses_projection = True
    trains_unprotected = False
