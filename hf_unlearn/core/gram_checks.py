"""What a Gram matrix must satisfy before a space holds it or subtracts it: finite, symmetric, and positive
semi-definite.

A Gram ``Σ x xᵀ`` is symmetric, finite and positive semi-definite by construction; anything else was corrupted on
the way (non-finite data or activations, a damaged or forged file), and eigenvectors of such a matrix would protect
the wrong directions without any error: a negated Gram gives a layer no protected direction at all, so its whole
update lands in the kept inputs' span. The cheap parts (finite, symmetric, a non-negative diagonal) are checked when
a space is made or loaded; the spectrum when it is decomposed anyway (``CoreGradientSpace.eigen``), before any
weight moves. Round-off leaves negative eigenvalues near 1e-12 of the largest (a float32-stored Gram near 1e-7);
a request subtracted from an approximate Gram (sketched rows, Grams collected on moving weights) leaves more, and
``PSD_TOLERANCE`` allows up to 1 % of the largest.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .low_rank import LowRankGram

PSD_TOLERANCE = 1e-2  # the most negative eigenvalue (or diagonal entry) allowed, as a share of the largest


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
        if gram.numel():
            diagonal = gram.diagonal()
            if diagonal.min() < -PSD_TOLERANCE * diagonal.abs().max():
                raise ValueError(_not_psd(source, name, f"a negative diagonal entry ({float(diagonal.min()):.3g})"))


def check_spectrum(values: torch.Tensor, source: str, name: str) -> None:
    """Raise ``ValueError`` if these eigenvalues (of one layer's Gram) cannot be a Gram's."""
    if values.numel() and values.min() < -PSD_TOLERANCE * values.max().clamp_min(0):
        share = float(values.min() / values.abs().max())
        raise ValueError(_not_psd(source, name, f"an eigenvalue of {float(values.min()):.3g} ({share:.3g} of the "
                                                "largest in size)"))


def check_low_rank(grams: Mapping[str, LowRankGram], source: str) -> None:
    """A compressed Gram's kept eigenvalues and dropped sums are finite and non-negative, its vectors finite."""
    for name, gram in grams.items():
        numbers = torch.tensor([gram.tail_sigma, gram.tail_sigma2, gram.dropped_bound], dtype=torch.float64)
        parts = (gram.values, gram.vectors, numbers)
        if not all(torch.isfinite(part).all() for part in parts):
            raise ValueError(f"{source}: the compressed Gram of layer '{name}' has NaN or infinite entries, so it is "
                             "corrupted.")
        if (gram.values < 0).any() or (numbers < 0).any():
            raise ValueError(_not_psd(source, name, "negative eigenvalues or tail sums"))


def _not_psd(source: str, name: str, what: str) -> str:
    return (
        f"{source}: the Gram matrix of layer '{name}' has {what}, but a Gram (a sum of x xᵀ) is positive "
        "semi-definite: it was altered or corrupted. Restore the space from a backup or rebuild it with "
        "CoreGradientSpace.from_model."
    )
