"""NegGrad+ / gradient difference: ascend on the forget set while descending on the retain set.

Loss: α·CE(retain) − (1 − α)·CE(forget), α = ``neggrad_alpha`` (Kurmanji et al., "Towards Unbounded
Machine Unlearning", NeurIPS 2023, where the weight is tuned per experiment). Forget objective: GA;
protection: a retain loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .base import MethodConfig, UnlearningMethod, cross_entropy
from .papers import KURMANJI_2023


@dataclass
class NegGradPlusConfig(MethodConfig):
    """Hyperparameters of NegGrad+ (``method="neggrad_plus"``).

    Args:
        neggrad_alpha (`float`, defaults to `0.99`):
            The loss is ``alpha·CE(retain) − (1 − alpha)·CE(forget)``; in [0, 1]. Kurmanji et al. tune it per
            experiment; 0.99 was chosen on digits from 0.9, 0.95 and 0.99.
    """

    neggrad_alpha: float = field(
        default=0.99,
        metadata={
            "help": "loss = alpha*CE(retain) - (1-alpha)*CE(forget) (Kurmanji et al. tune it per experiment; "
            "0.99 chosen on digits from 0.9, 0.95, 0.99)."
        },
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 3e-4, "num_train_epochs": 10.0}
    paper = KURMANJI_2023

    def __post_init__(self):
        if not 0.0 <= self.neggrad_alpha <= 1.0:
            raise ValueError(f"neggrad_alpha must lie in [0, 1], got {self.neggrad_alpha}")


class NegGradPlus(UnlearningMethod):
    """Forget-set ascent balanced by a retain loss, both in ``compute_loss``; no projection."""

    name = "neggrad_plus"
    needs_retain = True
    config_class = NegGradPlusConfig

    def compute_loss(self, context, model, batch):
        alpha = self.config.neggrad_alpha
        retain = cross_entropy(model, batch["retain"])
        forget = cross_entropy(model, batch["forget"])
        self.track("retain_loss", retain.detach())
        self.track("forget_loss", forget.detach())
        return alpha * retain - (1.0 - alpha) * forget
