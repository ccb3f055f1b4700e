"""Random labels (RL): train the forget examples towards labels drawn at random among the wrong classes.

Forget objective: CE(forget, y'), y' uniform over the classes other than y, drawn afresh at every
visit (Golatkar et al., CVPR 2020; the forget loss of SalUn and EUPMU). Protection: none. The
reference implementations may draw the true label (with probability 1/C); we exclude it, so every
step pushes away from the label being forgotten.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import MethodConfig, UnlearningMethod, logits_and_labels, random_wrong_labels
from .papers import GOLATKAR_2020


@dataclass
class RandomLabelsConfig(MethodConfig):
    """Hyperparameters of random labels (``method="random_labels"``): none of its own.

    Args:
        (none): the training values are its only knobs (``hf-unlearn methods random_labels`` lists its defaults).
    """

    training_defaults = {"optim": "adamw_torch", "learning_rate": 3e-4, "num_train_epochs": 5.0}
    paper = GOLATKAR_2020


class RandomLabels(UnlearningMethod):
    """Cross-entropy towards random wrong labels in ``compute_loss`` (``forget_loss``); no protection."""

    name = "random_labels"
    config_class = RandomLabelsConfig

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self.generator = torch.Generator().manual_seed(seed)

    def forget_loss(self, model, inputs) -> torch.Tensor:
        logits, labels = logits_and_labels(model, inputs)
        return F.cross_entropy(logits, random_wrong_labels(labels, logits.shape[-1], self.generator))

    def compute_loss(self, context, model, batch):
        return self.forget_loss(model, batch["forget"])
