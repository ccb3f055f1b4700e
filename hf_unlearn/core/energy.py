"""How many directions of a layer's input space are protected: the energy threshold γ.

A layer protects the top-k eigendirections of its retained inputs' Gram matrix, with k the
smallest count whose share of the energy reaches γ. Kept apart from the space so the rule can be
read (and tested) on its own.
"""

from __future__ import annotations

import torch

ENERGY_MEASURES = ("sigma", "sigma2")  # singular values σ (PGU's reference code) or eigenvalues σ² (GPM-style)
DEFAULT_ENERGY = "sigma"
# the library's γ wherever a space is built without one; a space keeps the γ it was built with, and only a run
# that sets one explicitly replaces it
DEFAULT_GAMMA = 0.8


def check_gamma(gamma: float, where: str = "gamma") -> float:
    """``gamma`` as a float in (0, 1]; ``where`` names the setting in the error."""
    gamma = float(gamma)
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"{where} must lie in (0, 1] (the energy share protected per layer), got {gamma}")
    return gamma


def check_energy(energy: str, where: str = "energy") -> str:
    """``energy`` if it names an energy measure (``ENERGY_MEASURES``); ``where`` names the setting in the error."""
    if energy not in ENERGY_MEASURES:
        raise ValueError(f"{where} must be one of {ENERGY_MEASURES}, got {energy!r}")
    return energy


def energy_rank(eigenvalues: torch.Tensor, gamma: float, energy: str = DEFAULT_ENERGY) -> int:
    """Smallest k whose top-k energy share reaches ``gamma``; eigenvalues sorted descending, ≥ 0.

    ``energy="sigma"`` measures energy with singular values σ = √λ (PGU's reference code);
    ``"sigma2"`` with λ = σ² (GPM-style code). σ-energy is flatter, so it keeps more directions.
    """
    check_energy(energy)
    # eigenvalues below round-off of the largest are zeros that eigh reported as ~1e-14;
    # under σ-energy their square roots would otherwise count as real directions
    noise = eigenvalues.max().clamp_min(0) * eigenvalues.numel() * 10 * torch.finfo(eigenvalues.dtype).eps
    eigenvalues = torch.where(eigenvalues > noise, eigenvalues, torch.zeros_like(eigenvalues))
    values = eigenvalues.sqrt() if energy == "sigma" else eigenvalues
    total = values.sum()
    if total <= 0:
        return 0
    share = torch.cumsum(values, 0) / total
    k = int(torch.searchsorted(share, torch.tensor(gamma - 1e-12, dtype=share.dtype)).item()) + 1
    return min(k, values.numel())
