"""SalUn: random labels on the forget set, applied only to the weights most salient for forgetting.

Fan, Liu, Zhang, Wong, Wei, Liu, "SalUn: Empowering Machine Unlearning via Gradient-based Weight
Saliency in Both Image Classification and Generation", ICLR 2024. In ``setup`` the gradient of the
forget set's cross-entropy is summed over the forget set (at the original weights); the
``salun_mask_ratio`` share of trainable weights with the largest |gradient|, ranked across all
layers, form the mask (paper default 50 %). Loss: CE(forget, random wrong labels) +
``salun_retain_weight``·CE(retain) (the paper's eq. 5; its code trains on forget ∪ retain, weight 1).
Protection: the mask, applied to the accumulated gradient before every optimizer step, plus the
retain loss. With weight decay, masked weights still decay (as in the reference code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .base import MethodConfig, Paper, all_reduce_sum, batches, cross_entropy, trainable_parameters
from .random_labels import RandomLabels


@dataclass
class SalUnConfig(MethodConfig):
    """Hyperparameters of SalUn (``method="salun"``).

    Args:
        salun_mask_ratio (`float`, defaults to `0.5`):
            Share of the weights that may move, those with the largest forget-gradient saliency; in (0, 1]
            (paper: 0.5).
        salun_retain_weight (`float`, defaults to `1.0`):
            Weight of the retain cross-entropy (the paper's eq. 5; code: 1).
    """

    salun_mask_ratio: float = field(
        default=0.5, metadata={"help": "Share of weights updated, by forget-gradient saliency (paper: 0.5)."}
    )
    salun_retain_weight: float = field(
        default=1.0, metadata={"help": "Weight of the retain cross-entropy (the paper's eq. 5; code: 1)."}
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 3e-4, "num_train_epochs": 5.0}
    paper = Paper(
        title="SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in Both Image "
        "Classification and Generation",
        authors="Fan, Chongyu and Liu, Jiancheng and Zhang, Yihua and Wong, Eric and Wei, Dennis and Liu, Sijia",
        venue="ICLR",
        year=2024,
        arxiv="2310.12508",
    )

    def __post_init__(self):
        if not 0.0 < self.salun_mask_ratio <= 1.0 or self.salun_retain_weight < 0:
            raise ValueError("salun_mask_ratio must lie in (0, 1] and salun_retain_weight be non-negative")


def saliency_masks(saliency: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """Boolean masks keeping the ``ratio`` share of entries with the largest |saliency|, ranked globally."""
    flat = torch.cat([s.abs().flatten().float() for s in saliency])
    keep = max(1, math.ceil(ratio * flat.numel()))
    threshold = torch.kthvalue(flat.cpu(), flat.numel() - keep + 1).values.to(flat.device)
    return [s.abs() >= threshold for s in saliency]


class SalUn(RandomLabels):
    """Random labels plus a retain loss; its protection, the saliency mask made in ``setup``, zeroes the gradients of
    the other weights in ``before_optimizer_step`` (no projection)."""

    causal_lm = False  # its saliency mask and random labels were not validated on token losses
    name = "salun"
    needs_retain = True
    config_class = SalUnConfig

    def setup(self, context):
        model = context.model
        params = [p for _, p in trainable_parameters(model)]
        saliency = [torch.zeros_like(p) for p in params]
        was_training = model.training
        model.eval()
        try:
            for batch in batches(context, context.forget_dataset):
                grads = torch.autograd.grad(cross_entropy(model, batch), params, allow_unused=True)
                for total, grad in zip(saliency, grads):
                    if grad is not None:
                        total += grad
        finally:
            model.train(was_training)
        all_reduce_sum(saliency)
        self.masks = list(zip(params, saliency_masks(saliency, self.config.salun_mask_ratio)))

    def compute_loss(self, context, model, batch):
        forget = self.forget_loss(model, batch["forget"])
        retain = cross_entropy(model, batch["retain"])
        return forget + self.config.salun_retain_weight * retain

    def before_optimizer_step(self, context, model):
        for param, mask in self.masks:
            if param.grad is not None:
                param.grad.mul_(mask)
