"""Keep every applied update out of the Core Gradient Space, whatever the optimizer does.

Projecting gradients is enough for plain SGD, but Adam-type optimizers rescale each entry and
weight decay acts on the weights themselves, so both leak into the protected space. We therefore
snapshot the protected weights before ``optimizer.step()`` and project the *difference* after it:
W ← W_before + P(W_after − W_before). For SGD this equals gradient projection.
"""

from __future__ import annotations

import torch
from torch import nn

from .core import LayerProjector


class ProjectedUpdates:
    """Snapshot/project pair around an optimizer step for the layers of a space."""

    def __init__(self, model: nn.Module, projectors: dict[str, LayerProjector]):
        modules = dict(model.named_modules())
        self.weights: dict[str, nn.Parameter] = {}
        self.projectors: dict[str, LayerProjector] = {}
        for name, projector in projectors.items():
            weight = modules[name].weight
            self.weights[name] = weight
            self.projectors[name] = projector.to(weight.device, weight.dtype)
        self._before: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def snapshot(self) -> None:
        for name, weight in self.weights.items():
            if weight.requires_grad:
                self._before[name] = weight.detach().clone()

    @torch.no_grad()
    def project(self) -> None:
        for name, before in self._before.items():
            weight = self.weights[name]
            weight.copy_(before + self.projectors[name].project(weight - before))
        self._before.clear()
