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

import torch
import torch.nn.functional as F

from .base import UnlearningMethod, frozen_copy, split_labels


def distillation_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(softmax(t/T) ‖ softmax(s/T)) · T², averaged over the batch (Hinton et al.'s KD loss)."""
    log_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="batchmean", log_target=True) * temperature**2


class SCRUB(UnlearningMethod):
    name = "scrub"
    needs_retain = True
    default_overrides = {"optim": "adamw_torch", "learning_rate": 3e-4, "num_train_epochs": 5.0}

    def setup(self, trainer):
        self.teacher = frozen_copy(trainer.model)

    def _student_and_teacher(self, model, inputs):
        features, labels = split_labels(inputs)
        with torch.no_grad():
            teacher = self.teacher(**features).logits
        return model(**features).logits, teacher, labels

    def compute_loss(self, trainer, model, batch):
        args = self.args
        student, teacher, labels = self._student_and_teacher(model, batch["retain"])
        loss = args.scrub_gamma * F.cross_entropy(student, labels)
        loss = loss + args.scrub_alpha * distillation_kl(student, teacher, args.scrub_temperature)
        if (trainer.state.epoch or 0.0) < args.scrub_max_epochs:
            student, teacher, _ = self._student_and_teacher(model, batch["forget"])
            forget_kl = distillation_kl(student, teacher, args.scrub_temperature)
            self.track("forget_kl", forget_kl.detach())
            loss = loss - forget_kl
        return loss
