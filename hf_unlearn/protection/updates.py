"""Keep every applied update out of the Core Gradient Space, whatever the optimizer does.

Projecting gradients is enough for plain SGD, but Adam-type optimizers rescale each entry and
weight decay acts on the weights themselves, so both leak into the protected space. We therefore
snapshot the protected weights before ``optimizer.step()`` and project the *difference* after it:
W ← W_before + P(W_after − W_before). For SGD this equals gradient projection.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ..core import LayerProjector


class ProjectedUpdates:
    """Snapshot/project pair around an optimizer step for the weights a space protects.

    ``targets`` maps a key to ``(layer name, weight, transposed)``: the trainable weight whose
    updates must stay out of that layer's input space, and its layout. Usually the key is the layer
    name and the weight its own; for a PEFT model the weights are the LoRA ``A`` matrices (``(r, in)``,
    never transposed) and the ``modules_to_save`` copies of the layer.
    """

    def __init__(self, projectors: dict[str, LayerProjector], targets: dict[str, tuple[str, nn.Parameter, bool]]):
        self.weights: dict[str, nn.Parameter] = {}
        self.projectors: dict[str, LayerProjector] = {}
        for key, (layer, weight, transposed) in targets.items():
            projector = dataclasses.replace(projectors[layer], transposed=transposed)
            self.weights[key] = weight
            self.projectors[key] = projector.to(weight.device, weight.dtype)
        self._before: dict[str, torch.Tensor] = {}

    @classmethod
    def for_layers(cls, model: nn.Module, projectors: dict[str, LayerProjector]) -> ProjectedUpdates:
        """The usual case: every protected layer's own weight."""
        modules = dict(model.named_modules())
        return cls(projectors, {n: (n, modules[n].weight, p.transposed) for n, p in projectors.items()})

    @torch.no_grad()
    def project_weights(self, keys: list[str]) -> None:
        """Project these weights themselves (LoRA ``A`` at the start, so B·A·x = 0 for kept x from step 0)."""
        for key in keys:
            self.weights[key].copy_(self.projectors[key].project(self.weights[key]))

    @torch.no_grad()
    def snapshot(self) -> None:
        for key, weight in self.weights.items():
            if weight.requires_grad:
                self._before[key] = weight.detach().clone()

    @torch.no_grad()
    def project(self) -> None:
        for key, before in self._before.items():
            weight = self.weights[key]
            weight.copy_(before + self.projectors[key].project(weight - before))
        self._before.clear()
