"""Layers that read the same input (q, k and v; gate and up) have equal Grams: keep one copy.

A transformer block's attention projections all see the same hidden states, so their Gram matrices
are equal bit for bit (the same products of the same rows). Holding them as one tensor cuts the
space's memory and file size by up to three times per block, and lets the eigendecomposition run
once. Equality is checked exactly, never assumed from names.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def _signature(gram: torch.Tensor) -> tuple:
    return (tuple(gram.shape), gram.dtype, float(gram.diagonal().sum()) if gram.numel() else 0.0)


def share_equal(grams: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The same mapping, with every group of equal Grams pointing at one tensor (the first one's)."""
    seen: dict[tuple, list[torch.Tensor]] = {}
    shared = {}
    for name, gram in grams.items():
        bucket = seen.setdefault(_signature(gram), [])
        twin = next((g for g in bucket if g is gram or torch.equal(g, gram)), None)
        if twin is None:
            bucket.append(gram)
            twin = gram
        shared[name] = twin
    return shared


def aliases(grams: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """For every layer whose Gram is the same tensor as an earlier layer's: that earlier layer's name."""
    first: dict[int, str] = {}
    out = {}
    for name, gram in grams.items():
        owner = first.setdefault(id(gram), name)
        if owner != name:
            out[name] = owner
    return out
