"""EUPMU, explicit version: unilateral gradient surgery with two backward passes per micro-batch.

Zhou et al., NeurIPS 2025 (arXiv 2510.22124), Proposition 3.2. With g_f = ∇L_f (CE to random wrong
labels on the forget batch) and g_r = ∇L_r (CE on the retain batch), over all trainable weights:
λ* = (−⟨g_r, g_f⟩ − ε) / ‖g_r‖², d = g_f + λ* g_r if λ* > 0 else g_f. Then ⟨g_r, d⟩ ≥ −ε: a step
along −d raises the retain loss by at most lr·ε to first order. ε = ``eupmu_explicit_epsilon``
(reference code default 0).

How d reaches ``.grad``: the method returns a surrogate loss whose value is L_f and whose gradient is
exactly d, so the Trainer's backward, gradient accumulation, clipping and DDP all-reduce handle it
like any loss. Limitation: the surgery is computed per micro-batch and per process, so with
gradient accumulation or several processes the applied direction is the mean of per-micro-batch
surgered directions, each satisfying the bound for its own batch, not the surgery of the mean
gradients. Memory: two extra copies of the trainable weights' gradients. Models using reentrant
gradient checkpointing cannot take ``torch.autograd.grad``; use ``use_reentrant=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .base import MethodConfig, cross_entropy
from .papers import ZHOU_2025
from .random_labels import RandomLabels


@dataclass
class EUPMUExplicitConfig(MethodConfig):
    """Hyperparameters of explicit gradient surgery (``method="eupmu_explicit"``).

    Args:
        eupmu_explicit_epsilon (`float`, defaults to `0.0`):
            The surgered direction ``d`` keeps ``<g_r, d> >= -epsilon``: the retain loss may rise at most this much
            to first order (Prop. 3.2 of the paper; reference code: 0).
    """

    eupmu_explicit_epsilon: float = field(
        default=0.0,
        metadata={"help": "The surgered direction d keeps <g_r, d> >= -epsilon (Prop. 3.2; reference code: 0)."},
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 3e-4, "num_train_epochs": 5.0}
    paper = ZHOU_2025

    def __post_init__(self):
        if self.eupmu_explicit_epsilon < 0:
            raise ValueError(f"eupmu_explicit_epsilon must be non-negative, got {self.eupmu_explicit_epsilon}")

def _dot(a: list[torch.Tensor], b: list[torch.Tensor]) -> torch.Tensor:
    return sum((x.float() * y.float()).sum() for x, y in zip(a, b))


def surgery_direction(
    forget_grads: list[torch.Tensor], retain_grads: list[torch.Tensor], epsilon: float
) -> tuple[list[torch.Tensor], float]:
    """``(d, λ)``: the forget gradient with just enough retain gradient added that ⟨g_r, d⟩ ≥ −ε."""
    norm2 = _dot(retain_grads, retain_grads)
    if norm2 <= 0:
        return list(forget_grads), 0.0
    lam = float((-_dot(retain_grads, forget_grads) - epsilon) / norm2)
    if lam <= 0:
        return list(forget_grads), 0.0
    return [f + lam * r for f, r in zip(forget_grads, retain_grads)], lam


class EUPMUExplicit(RandomLabels):
    """Random-label forgetting whose gradient is surgered in ``compute_loss`` (``surgery_direction``: two backward
    passes), so the retain loss does not rise; no projection."""

    name = "eupmu_explicit"
    needs_retain = True
    config_class = EUPMUExplicitConfig

    def compute_loss(self, context, model, batch):
        params = [p for p in model.parameters() if p.requires_grad]
        forget = self.forget_loss(model, batch["forget"])
        forget_grads = torch.autograd.grad(forget, params, allow_unused=True)
        retain = cross_entropy(model, batch["retain"])
        retain_grads = torch.autograd.grad(retain, params, allow_unused=True)
        forget_grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, forget_grads)]
        retain_grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, retain_grads)]
        direction, lam = surgery_direction(forget_grads, retain_grads, self.config.eupmu_explicit_epsilon)
        self.retain_alignment = float(_dot(retain_grads, direction))  # ⟨g_r, d⟩ ≥ −ε
        self.track("surgery_lambda", lam)
        self.track("surgery_active", float(lam > 0))
        self.track("retain_loss", retain.detach())
        # value L_f, gradient d: every parameter takes part, so DDP's hooks fire for all of them
        linear = sum((p * d.detach()).sum() for p, d in zip(params, direction))
        return forget.detach() + linear - linear.detach()
