"""Fisher forgetting: noise shaped by the retain set's Fisher information, then a short repair.

Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep
Networks", CVPR 2020. In ``setup`` the diagonal Fisher F of the retain set is estimated from
per-example gradients of −log p(y|x) (the empirical Fisher, as in SalUn's implementation) on up to
``fisher_num_samples`` retain examples, and every trainable weight receives Gaussian noise of
variance α / max(F / F̄, 10⁻³), where F̄ is the mean of F over all trainable weights (α =
``fisher_alpha``; the cap 10³ on the inverse is the reference code's). Weights the retain data
hardly uses, i.e. those that can only encode the forget set, get the most noise. Normalising by F̄
is our change: F scales with the loss, which is tiny for a model that fits its training data (on
digits every entry fell below the reference's absolute floor 10⁻³, so the noise lost its shape).
The training loop then fine-tunes on the retain set (CE) to repair what the noise damaged (the
Trainer always runs at least one epoch; keep ``num_train_epochs`` small). The reference code's
per-layer heuristics (×10 for the head and norms, averaging the variance per output unit, zeroing a
forgotten class's head row) are left out: they need to know the scenario.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import MethodConfig, UnlearningMethod, all_reduce_sum, batches, cross_entropy, trainable_parameters
from .papers import GOLATKAR_2020

FISHER_FLOOR = 1e-3  # the reference caps the inverse Fisher at 1e3


@dataclass
class FisherConfig(MethodConfig):
    """Hyperparameters of Fisher forgetting (``method="fisher"``).

    Args:
        fisher_alpha (`float`, defaults to `1e-4`):
            Noise variance scale: each weight gets variance ``alpha / max(F / mean(F), 1e-3)``; 1e-4 was chosen on
            digits from 1e-5 to 1e-3.
        fisher_num_samples (`int`, defaults to `1000`):
            Retain examples used to estimate the diagonal Fisher ``F``.
    """

    fisher_alpha: float = field(
        default=1e-4,
        metadata={"help": "Noise variance alpha / (Fisher / its mean); 1e-4 chosen on digits from 1e-5 ... 1e-3."},
    )
    fisher_num_samples: int = field(
        default=1000, metadata={"help": "Retain examples used to estimate the diagonal Fisher."}
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 1e-3, "num_train_epochs": 3.0}
    paper = GOLATKAR_2020

    def __post_init__(self):
        if self.fisher_alpha < 0 or self.fisher_num_samples < 1:
            raise ValueError("fisher_alpha must be non-negative and fisher_num_samples at least 1")


class FisherForgetting(UnlearningMethod):
    """Fisher-shaped noise added in ``setup``, then a retain cross-entropy repair in ``compute_loss``; no projection."""

    causal_lm = False  # a per-example diagonal Fisher over an LM's weights: not built for token losses
    name = "fisher"
    needs_retain = True
    config_class = FisherConfig

    def setup(self, context):
        model, config, device = context.model, self.config, context.args.device
        params = [p for _, p in trainable_parameters(model)]
        retain = context.retain_dataset
        if len(retain) > config.fisher_num_samples:
            retain = retain.shuffle(seed=self.seed).select(range(config.fisher_num_samples))
        fisher = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        count = torch.zeros((), device=device)
        was_training = model.training
        model.eval()
        try:
            for example in batches(context, retain, batch_size=1):
                grads = torch.autograd.grad(cross_entropy(model, example), params, allow_unused=True)
                for total, grad in zip(fisher, grads):
                    if grad is not None:
                        total += grad.float() ** 2
                count += 1
        finally:
            model.train(was_training)
        all_reduce_sum([*fisher, count])
        generator = torch.Generator().manual_seed(self.seed)  # identical noise on every process
        # the Fisher's scale follows the loss (tiny for a model that fits its data): normalise by its mean
        mean = sum(f.sum() for f in fisher) / sum(f.numel() for f in fisher)
        with torch.no_grad():
            for param, total in zip(params, fisher):
                relative = total / mean.clamp(min=torch.finfo(torch.float32).tiny)
                std = (config.fisher_alpha / relative.clamp(min=FISHER_FLOOR)).sqrt()
                noise = torch.randn(param.shape, generator=generator).to(param.device) * std
                param.add_(noise.to(param.dtype))

    def compute_loss(self, context, model, batch):
        return cross_entropy(model, batch["retain"])
