"""Fine-tuning (FT): keep training on the retain set only and let the forget set fade.

Forget objective: none. Protection: the retain loss itself. Forgetting comes only from
catastrophic forgetting, so FT is the weakest baseline (Golatkar et al., CVPR 2020; Jia et al.,
NeurIPS 2023; Fan et al., ICLR 2024). Note that one "epoch" here is one pass over the forget set,
paired with as many retain examples, not a pass over the retain set.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import MethodConfig, UnlearningMethod, cross_entropy
from .papers import GOLATKAR_2020


@dataclass
class FineTuneConfig(MethodConfig):
    """Hyperparameters of fine-tuning (``method="finetune"``): none of its own.

    Args:
        (none): the training values are its only knobs (``hf-unlearn methods finetune`` lists its defaults).
    """

    training_defaults = {"optim": "adamw_torch", "learning_rate": 1e-3, "num_train_epochs": 10.0}
    paper = GOLATKAR_2020


class FineTune(UnlearningMethod):
    """Cross-entropy on the retain stream only, in ``compute_loss``; no forget objective and no projection."""

    name = "finetune"
    needs_retain = True
    config_class = FineTuneConfig

    def compute_loss(self, context, model, batch):
        return cross_entropy(model, batch["retain"])
