"""SCRUB: a student that moves away from its teacher on the forget set and stays with it on the rest.

Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023.
Teacher = a frozen copy of the original model (made in ``setup``); student = the model being trained.
Loss per step: γ·CE(retain) + α·KL_T(teacher ‖ student on retain) − KL_T(teacher ‖ student on forget),
the last (max) term only during the first ``scrub_max_epochs`` epochs. KL_T is the temperature-T
distillation loss (× T², as in the reference code). Reference defaults: α = 0.001, γ = 0.99, T = 4,
2 max epochs. The reference alternates separate max and min steps; one combined step per batch is
the same first-order update and fits the one-batch contract.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import MethodConfig, UnlearningMethod, frozen_copy, split_labels
from .papers import KURMANJI_2023


@dataclass
class SCRUBConfig(MethodConfig):
    """Hyperparameters of SCRUB (``method="scrub"``); the defaults are the reference code's.

    Args:
        scrub_alpha (`float`, defaults to `0.001`):
            Weight of the distillation KL towards the teacher on the retain batch.
        scrub_gamma (`float`, defaults to `0.99`):
            Weight of the retain cross-entropy.
        scrub_temperature (`float`, defaults to `4.0`):
            Distillation temperature ``T`` (``kd_T``); the KL is scaled by ``T²``.
        scrub_max_epochs (`float`, defaults to `2.0`):
            Epochs during which the forget (max) term pushes the student away from the teacher (``msteps``).
    """

    scrub_alpha: float = field(default=0.001, metadata={"help": "Weight of the retain distillation KL (alpha)."})
    scrub_gamma: float = field(default=0.99, metadata={"help": "Weight of the retain cross-entropy (gamma)."})
    scrub_temperature: float = field(default=4.0, metadata={"help": "Distillation temperature (kd_T)."})
    scrub_max_epochs: float = field(
        default=2.0, metadata={"help": "Epochs with the forget (max) term (msteps in the reference code)."}
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 3e-4, "num_train_epochs": 5.0}
    paper = KURMANJI_2023

    def __post_init__(self):
        if self.scrub_alpha < 0 or self.scrub_gamma < 0 or self.scrub_max_epochs < 0 or self.scrub_temperature <= 0:
            raise ValueError("SCRUB weights and scrub_max_epochs must be non-negative, scrub_temperature positive")


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) · T², averaged over the batch (Hinton et al.'s KD loss)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


class SCRUB(UnlearningMethod):
    """Distillation from a frozen teacher (made in ``setup``): kept on the retain batch and pushed away on the forget
    batch, in ``compute_loss``; no projection."""

    causal_lm = False  # its distillation reads one distribution per example, not per token
    name = "scrub"
    needs_retain = True
    config_class = SCRUBConfig

    def setup(self, context):
        self.teacher = frozen_copy(context.model)

    def _student_and_teacher(self, model, inputs):
        features, labels = split_labels(inputs)
        with torch.no_grad():
            teacher = self.teacher(**features).logits
        return model(**features).logits, teacher, labels

    def compute_loss(self, context, model, batch):
        config = self.config
        student, teacher, labels = self._student_and_teacher(model, batch["retain"])
        loss = config.scrub_gamma * F.cross_entropy(student, labels)
        loss = loss + config.scrub_alpha * distillation_kl(student, teacher, config.scrub_temperature)
        if (context.state.epoch or 0.0) < config.scrub_max_epochs:
            student, teacher, _ = self._student_and_teacher(model, batch["forget"])
            forget_kl = distillation_kl(student, teacher, config.scrub_temperature)
            self.track("forget_kl", forget_kl.detach())
            loss = loss - forget_kl
        return loss
