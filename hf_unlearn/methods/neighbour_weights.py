"""Per-example weights for a sample-removal forget loss, read from the labels of the kept examples nearest each
forgotten one.

A model retrained without the forget set still gets a forgotten example right when the kept data around it
carries its label, and gets it wrong when only memorizing the example itself made it right. A forget loss that
pushes every example down alike makes the whole forget set uniformly less confident: when its mean confidence
reaches held-out data's, most examples are still right (too few errors), and when its accuracy does, too many are
unsure (a confidence attacker flags too many). Weighting each example's loss by how few of its ``k`` nearest kept
examples share its label (cosine similarity of middle-layer features: the kept examples' read under the original,
each forget example's in the forward pass of its own loss) moves the examples
retraining would lose and leaves the ones it keeps. On a memorizing BatchNorm ResNet (random 10 % of 2 000 animal
silhouettes) and on TREC questions, that agreement told which forgotten examples the retrained model gets right
with ROC AUC 0.83-0.88. The original's own confidence tells as much (0.86-1.00), and the margin term already leans
on it; the neighbours add whether the kept data would teach the same label (docs/fidelity.md, "Forget-loss
weights").

A weight is ``1 - agreement + FLOOR``, normalised within each batch: a batch whose examples all agree with
their neighbours is pushed uniformly, as without weights: the weights divide each batch's push among its examples
and never shrink it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..models.hidden_features import middle_layer, nearest

BANK_SIZE = 2048  # kept examples whose features are held (a seeded sample of the retain set)
NEIGHBOURS = 10  # kept examples read per forgotten example
FLOOR = 0.05  # the weight of an example every neighbour agrees with


@dataclass
class RetainNeighbours:
    """Middle-layer features (unit rows) and labels of a sample of kept examples under the original model."""

    features: torch.Tensor  # (n, d), float32, unit rows
    labels: torch.Tensor  # (n,)
    k: int = NEIGHBOURS

    def __post_init__(self):
        if self.features.dim() != 2 or self.labels.dim() != 1 or len(self.features) != len(self.labels):
            raise ValueError(f"features (n, d) and labels (n,) must match, got {tuple(self.features.shape)} and "
                             f"{tuple(self.labels.shape)}")
        if len(self.labels) == 0:
            raise ValueError("RetainNeighbours needs at least one kept example")
        self.features = nn.functional.normalize(self.features.float(), dim=1)

    def agreement(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Per query row, the share of its ``k`` most cosine-similar kept examples that carry its label."""
        if self.features.device != features.device:  # moved once, not at every step
            self.features, self.labels = self.features.to(features.device), self.labels.to(features.device)
        picked = nearest(features.float(), self.features, self.k)
        return (self.labels[picked] == labels[:, None].to(self.labels.device)).float().mean(1)

    def weights(self, hidden_states: tuple, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
        """Each forget example's loss weight from a forward pass's hidden states (detached: no gradient)."""
        with torch.no_grad():
            return 1.0 - self.agreement(middle_layer(hidden_states, inputs), labels) + FLOOR


def weighted_mean(values: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """The mean of ``values`` under ``weights`` (the plain mean when None)."""
    if weights is None:
        return values.mean()
    return (weights * values).sum() / weights.sum()
