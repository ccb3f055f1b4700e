"""SimNPO: NPO without a reference model, on the length-normalised log-likelihood.

Fan, Liu, Lin, Jia, Zhang, Mei, Liu, "Simplicity Prevails: Rethinking Negative Preference Optimization for
LLM Unlearning", NeurIPS 2025 (arXiv 2410.07163). With |y| the number of target tokens (a classifier's
|y| = 1) and log π_θ(y|x) their summed log-probability,
L_forget = −(2/β)·mean(log σ(−(β/|y|)·log π_θ(y|x) − γ)), the paper's equation. The loss is
``simnpo_forget_weight``·L_forget + ``simnpo_retain_weight``·CE(retain), as in the reference code's
``simnpo_grad_diff`` and OpenUnlearning's ``SimNPO`` trainer. Dropping NPO's reference model removes its
bias towards examples the original already found unlikely; dividing by |y| keeps long answers from
dominating. The gradient is GA's on the mean token log-probability, weighted by 2σ(β·m + γ)
(m = log π_θ(y|x)/|y|): it fades once an example's tokens are improbable.

The reference code subtracts the margin before multiplying by β (its γ is the paper's γ/β); both read
γ = 0 alike, the default everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .base import MethodConfig, Paper, UnlearningMethod, cross_entropy, sequence_log_probs


@dataclass
class SimNPOConfig(MethodConfig):
    """Hyperparameters of SimNPO (``method="simnpo"``); the defaults are OpenUnlearning's ``SimNPO`` trainer
    (the reference code's TOFU forget10 setting).

    The recommended training values are the published causal-LM ones (AdamW, lr 1e-5, 10 epochs: the reference
    code's and OpenUnlearning's TOFU runs on full weights). There is one set of defaults for every model: on a
    LoRA adapter or a small classifier pass a larger ``learning_rate`` (about 1e-4 for an adapter, 1e-3 for the
    digits CNN).

    Args:
        simnpo_beta (`float`, defaults to `4.5`):
            Inverse temperature ``beta`` on the mean token log-probability (OpenUnlearning's 4.5, the reference
            code's TOFU forget10 value; its forget05 run uses 2.5); positive.
        simnpo_gamma (`float`, defaults to `0.0`):
            Reward margin ``gamma`` (the paper's equation; 0 in every published TOFU run); non-negative.
        simnpo_forget_weight (`float`, defaults to `0.125`):
            Weight of the SimNPO loss (``npo_coeff`` in the reference code, ``gamma`` in OpenUnlearning); positive.
        simnpo_retain_weight (`float`, defaults to `1.0`):
            Weight of the retain cross-entropy (``grad_diff_coeff``, OpenUnlearning's ``alpha``); 0 drops the
            retain term and the need for a retain set.
    """

    simnpo_beta: float = field(
        default=4.5, metadata={"help": "Inverse temperature beta on the mean token log-probability (OpenUnlearning)."}
    )
    simnpo_gamma: float = field(default=0.0, metadata={"help": "Reward margin gamma (0 in the published runs)."})
    simnpo_forget_weight: float = field(
        default=0.125, metadata={"help": "Weight of the SimNPO forget loss (reference npo_coeff; OpenUnlearning)."}
    )
    simnpo_retain_weight: float = field(
        default=1.0, metadata={"help": "Weight of the retain cross-entropy; 0 needs no retain set."}
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 1e-5, "num_train_epochs": 10.0}
    paper = Paper(
        title="Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning",
        authors="Fan, Chongyu and Liu, Jiancheng and Lin, Licong and Jia, Jinghan and Zhang, Ruiqi and Mei, Song "
        "and Liu, Sijia",
        venue="NeurIPS",
        year=2025,
        arxiv="2410.07163",
    )

    def __post_init__(self):
        if not self.simnpo_beta > 0:
            raise ValueError(f"simnpo_beta must be positive, got {self.simnpo_beta}")
        if not self.simnpo_gamma >= 0:
            raise ValueError(f"simnpo_gamma (the reward margin) must be non-negative, got {self.simnpo_gamma}")
        if not self.simnpo_forget_weight > 0:
            raise ValueError(f"simnpo_forget_weight must be positive, got {self.simnpo_forget_weight}")
        if not self.simnpo_retain_weight >= 0:
            raise ValueError(f"simnpo_retain_weight must be non-negative, got {self.simnpo_retain_weight}")


def simnpo_loss(mean_log_prob: torch.Tensor, beta: float, gamma: float = 0.0) -> torch.Tensor:
    """−(2/β)·mean(log σ(−β·m − γ)) for m = log π(y|x)/|y| per example (the paper's SimNPO loss)."""
    return -(2.0 / beta) * F.logsigmoid(-beta * mean_log_prob - gamma).mean()


class SimNPO(UnlearningMethod):
    """Reference-free, length-normalised negative preference loss plus a retain cross-entropy, both in
    ``compute_loss``; no projection."""

    name = "simnpo"
    needs_retain = True  # with the default retain weight; an instance with weight 0 reads no retain stream
    config_class = SimNPOConfig

    def __init__(self, config: MethodConfig, seed: int = 0):
        super().__init__(config, seed)
        self.needs_retain = self.config.simnpo_retain_weight > 0

    def compute_loss(self, context, model, batch):
        config = self.config
        forget = simnpo_loss(sequence_log_probs(model, batch["forget"], per_token=True), config.simnpo_beta,
                             config.simnpo_gamma)
        self.track("forget_loss", forget.detach())
        loss = config.simnpo_forget_weight * forget
        if self.needs_retain:
            retain = cross_entropy(model, batch["retain"])
            self.track("retain_loss", retain.detach())
            loss = loss + config.simnpo_retain_weight * retain
        return loss
