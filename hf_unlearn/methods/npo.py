"""NPO: negative preference optimisation against the original model.

Zhang, Lin, Bai, Mei, "Negative Preference Optimization: From Catastrophic Collapse to Effective
Unlearning", COLM 2024 (arXiv 2404.05868). With π(y|x) the probability of the example's label,
L = −(2/β)·mean(log σ(−β·log(π_θ(y|x) / π_ref(y|x)))), π_ref = a frozen copy of the original model
made in ``setup`` (for a causal LM, log π(y|x) sums the log-probabilities of the text's target tokens,
as in the paper). Its gradient is GA's, weighted by 2σ(β·log ratio): it fades once an example is
forgotten, which is what keeps NPO from GA's collapse. β = 0.1 (the paper's value).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import MethodConfig, Paper, UnlearningMethod, frozen_copy, sequence_log_probs


@dataclass
class NPOConfig(MethodConfig):
    """Hyperparameters of NPO (``method="npo"``).

    Args:
        npo_beta (`float`, defaults to `0.1`):
            Inverse temperature ``beta`` of the preference loss (the paper's 0.1); positive.
    """

    npo_beta: float = field(default=0.1, metadata={"help": "Inverse temperature beta (the paper's 0.1)."})
    training_defaults = {"optim": "adamw_torch", "learning_rate": 1e-4, "num_train_epochs": 5.0}
    paper = Paper(
        title="Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning",
        authors="Zhang, Ruiqi and Lin, Licong and Bai, Yu and Mei, Song",
        venue="COLM",
        year=2024,
        arxiv="2404.05868",
    )

    def __post_init__(self):
        if self.npo_beta <= 0:
            raise ValueError(f"npo_beta must be positive, got {self.npo_beta}")


def npo_loss(log_prob: torch.Tensor, reference_log_prob: torch.Tensor, beta: float) -> torch.Tensor:
    return -(2.0 / beta) * F.logsigmoid(-beta * (log_prob - reference_log_prob)).mean()


class NPO(UnlearningMethod):
    """Negative preference loss against a frozen reference (made in ``setup``) in ``compute_loss``; no projection."""

    name = "npo"
    config_class = NPOConfig

    def setup(self, context):
        self.reference = frozen_copy(context.model)

    def compute_loss(self, context, model, batch):
        with torch.no_grad():
            reference = sequence_log_probs(self.reference, batch["forget"])
        return npo_loss(sequence_log_probs(model, batch["forget"]), reference, self.config.npo_beta)
