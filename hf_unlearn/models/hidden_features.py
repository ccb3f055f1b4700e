"""One vector per example from a middle layer, and nearest neighbours by cosine similarity.

Two things read "which examples does the model see as alike": the sample-removal target (the validation examples
nearest the forget set, ``training/neighbour_target.py``) and the forget loss's per-example weights (the kept
examples nearest each forgotten one, ``methods/neighbour_weights.py``). Both use a hidden state halfway through
the model, which still describes the input rather than the label: the last one has already sorted a memorized
example into its own class.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LAYER = 0.5  # which hidden state, as a fraction of the depth (0: the embeddings' output)


def pooled(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One vector per example: a feature map averaged over its positions, a sequence over its real tokens."""
    if hidden.dim() == 4:  # (batch, channels, height, width)
        return hidden.mean(dim=(2, 3))
    if hidden.dim() == 3:  # (batch, tokens, width)
        if mask is not None and mask.shape == hidden.shape[:2]:
            weights = mask.to(hidden.dtype)[..., None]
            return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        return hidden.mean(1)
    return hidden.flatten(1)


def middle_layer(hidden_states: tuple | None, inputs: dict) -> torch.Tensor:
    """The hidden state ``LAYER`` of the way through, pooled to one float row per example."""
    if not hidden_states:
        raise TypeError("the model returns no hidden states")
    middle = hidden_states[int(LAYER * (len(hidden_states) - 1))]
    return pooled(middle.float(), inputs.get("attention_mask"))


def nearest(query: torch.Tensor, keys: torch.Tensor, k: int, exclude_self: bool = False) -> torch.Tensor:
    """Indices of each query row's ``k`` most cosine-similar key rows (itself left out when the two are one set)."""
    similarity = nn.functional.normalize(query, dim=1) @ nn.functional.normalize(keys, dim=1).T
    if exclude_self:
        similarity.fill_diagonal_(-math.inf)
    return similarity.topk(min(k, similarity.shape[1] - int(exclude_self)), dim=1).indices
