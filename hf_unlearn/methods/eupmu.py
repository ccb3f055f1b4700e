"""EUPMU: utility-preserving unlearning by implicit gradient surgery (one backward per step).

Zhou, Yu, Zhang, Chang, Zhou, Wu, Zhao, "Efficient Utility-Preserving Machine Unlearning with Implicit
Gradient Surgery", NeurIPS 2025 (arXiv 2510.22124). Minimise the forget loss subject to a bounded
change of the retain loss. Each step minimises J = w·log L_r + log L_f (L_f = CE to random wrong
labels on the forget batch, L_r = CE on the retain batch), takes the optimizer step, evaluates the
same retain batch again (one extra forward, L_r'), and updates the multiplier by dual ascent with
Adam on the gradient log L_r − log L_r' − ε, keeping w ≥ 0 (w₀ = 0). The multiplier rises while a
step fails to lower log L_r by ε and decays otherwise, so the retain loss sets how hard forgetting may
push. Reference defaults: ε = 0.01, Adam lr 1 and weight decay 0.01 on w.

Gradient accumulation and DDP: J is a per-micro-batch loss, so accumulation and all-reduce act on it
as on any loss. L_r and L_r' are averaged over the step's micro-batches and summed across processes
before the dual update, so every process keeps the same w. The re-evaluation replays the random
state of the training forward (same dropout masks) and leaves batch-norm statistics untouched.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from .base import MethodConfig, all_reduce_sum, cross_entropy
from .papers import ZHOU_2025
from .random_labels import RandomLabels

TINY = 1e-8  # keeps log finite for a perfectly fitted batch (reference: 1e-8)


@dataclass
class EUPMUConfig(MethodConfig):
    """Hyperparameters of EUPMU, implicit gradient surgery (``method="eupmu"``).

    Args:
        eupmu_epsilon (`float`, defaults to `0.01`):
            How much the retain loss must fall in log per step before the multiplier ``w`` stops rising: the
            dual ascent's gradient is ``log L_r(before) - log L_r(after) - epsilon`` (reference code:
            ``eu_error=0.01``).
        eupmu_multiplier_lr (`float`, defaults to `1.0`):
            Adam learning rate of the multiplier ``w``.
        eupmu_multiplier_weight_decay (`float`, defaults to `0.01`):
            Adam weight decay of the multiplier ``w`` (reference code: 0.01).
    """

    eupmu_epsilon: float = field(
        default=0.01,
        metadata={
            "help": "The retain loss must fall by this much in log per step before the multiplier stops rising "
            "(epsilon; reference code eu_error=0.01)."
        },
    )
    eupmu_multiplier_lr: float = field(default=1.0, metadata={"help": "Adam learning rate of the multiplier w."})
    eupmu_multiplier_weight_decay: float = field(
        default=0.01, metadata={"help": "Adam weight decay of the multiplier w (reference code: 0.01)."}
    )
    training_defaults = {"optim": "adamw_torch", "learning_rate": 1e-3, "num_train_epochs": 5.0}
    paper = ZHOU_2025

    def __post_init__(self):
        if self.eupmu_epsilon < 0:
            raise ValueError(f"eupmu_epsilon must be non-negative, got {self.eupmu_epsilon}")
        if self.eupmu_multiplier_lr <= 0 or self.eupmu_multiplier_weight_decay < 0:
            raise ValueError("eupmu_multiplier_lr must be positive and eupmu_multiplier_weight_decay non-negative")


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


@contextmanager
def replayed_rng(state: dict, device: torch.device):
    """Run a block with the random state ``state`` and restore the current one afterwards."""
    with torch.random.fork_rng(devices=[device] if "cuda" in state else []):
        torch.set_rng_state(state["cpu"])
        if "cuda" in state:
            torch.cuda.set_rng_state(state["cuda"], device)
        yield


@contextmanager
def frozen_norm_statistics(model: nn.Module):
    """Restore batch-norm running statistics after a forward in train mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norms]
    try:
        yield
    finally:
        for module, buffers in zip(norms, saved):
            for key, value in buffers.items():
                getattr(module, key).copy_(value)


class EUPMU(RandomLabels):
    """Random-label forgetting against ``w·log L_r``; its protection, the multiplier ``w``, rises by dual ascent in
    ``after_optimizer_step`` (no projection)."""

    name = "eupmu"
    needs_retain = True
    config_class = EUPMUConfig

    def __init__(self, config, seed: int = 0):
        super().__init__(config, seed)
        self.multiplier = torch.zeros(1, requires_grad=True)
        self.dual_optimizer = torch.optim.Adam(
            [self.multiplier], lr=config.eupmu_multiplier_lr, weight_decay=config.eupmu_multiplier_weight_decay
        )
        self._step_batches: list[tuple[dict, torch.Tensor, dict]] = []

    @property
    def w(self) -> float:
        return float(self.multiplier.detach().clamp(min=0.0))

    def compute_loss(self, context, model, batch):
        forget = self.forget_loss(model, batch["forget"])
        device = context.args.device
        rng = _rng_state(device)
        retain = cross_entropy(model, batch["retain"])
        self._step_batches.append((batch["retain"], retain.detach(), rng))
        self.track("forget_loss", forget.detach())
        self.track("retain_loss", retain.detach())
        return self.w * torch.log(retain + TINY) + torch.log(forget + TINY)

    @torch.no_grad()
    def after_optimizer_step(self, context, model):
        if not self._step_batches:
            return
        device = context.args.device
        before, after = [], []
        with context.compute_loss_context_manager(), frozen_norm_statistics(model):
            for inputs, loss, rng in self._step_batches:
                with replayed_rng(rng, device):
                    after.append(cross_entropy(model, inputs).float())
                before.append(loss.float())
        totals = torch.stack([torch.stack(before).sum(), torch.stack(after).sum()]).to(device)
        count = torch.tensor(float(len(before)), device=device)
        all_reduce_sum([totals, count])
        self._step_batches.clear()
        log_before, log_after = (math.log(float(t / count) + TINY) for t in totals)
        self.update_multiplier(log_before - log_after - self.config.eupmu_epsilon)

    def update_multiplier(self, dual_gradient: float) -> None:
        """One Adam step on w with ``dual_gradient`` (log L_r − log L_r' − ε), then w ← max(w, 0)."""
        with torch.enable_grad():
            self.dual_optimizer.zero_grad()
            self.multiplier.grad = torch.tensor([dual_gradient])
            self.dual_optimizer.step()
        with torch.no_grad():
            self.multiplier.clamp_(min=0.0)
        self.track("eupmu_multiplier", self.w)
