"""What a Gram matrix must satisfy before a space holds it or subtracts it: finite, and symmetric.

A Gram ``Σ x xᵀ`` is symmetric and finite by construction; anything else was corrupted on the way
(non-finite data or activations, a damaged file), and eigenvectors of such a matrix would protect
the wrong directions without any error.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch


def check_grams(grams: Mapping[str, torch.Tensor], source: str, *, symmetric: bool = True) -> None:
    """Raise ``ValueError`` naming the layer unless every Gram is finite and (up to round-off) symmetric."""
    for name, gram in grams.items():
        if not torch.isfinite(gram).all():
            raise ValueError(
                f"{source}: the Gram matrix of layer '{name}' has NaN or infinite entries. The data that built it "
                "had non-finite values, or the model produced them: clean the data, then rebuild."
            )
        if symmetric and gram.numel():
            scale = gram.abs().max().clamp_min(torch.finfo(gram.dtype).tiny)
            if (gram - gram.T).abs().max() > 1e-9 * scale:
                raise ValueError(f"{source}: the Gram matrix of layer '{name}' is not symmetric, so it is corrupted.")
