"""NegGrad+ / gradient difference: ascend on the forget set while descending on the retain set.

Loss: α·CE(retain) − (1 − α)·CE(forget), α = ``neggrad_alpha`` (Kurmanji et al., "Towards Unbounded
Machine Unlearning", NeurIPS 2023, where the weight is tuned per experiment). Forget objective: GA;
protection: a retain loss.
"""

from __future__ import annotations

from .base import UnlearningMethod, cross_entropy


class NegGradPlus(UnlearningMethod):
    name = "neggrad_plus"
    needs_retain = True
    default_overrides = {"optim": "adamw_torch", "learning_rate": 3e-4, "num_train_epochs": 10.0}

    def compute_loss(self, trainer, model, batch):
        alpha = self.args.neggrad_alpha
        retain = cross_entropy(model, batch["retain"])
        forget = cross_entropy(model, batch["forget"])
        self.track("retain_loss", retain.detach())
        self.track("forget_loss", forget.detach())
        return alpha * retain - (1.0 - alpha) * forget
