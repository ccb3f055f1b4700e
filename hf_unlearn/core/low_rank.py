"""A layer's Gram kept as its top-r eigenpairs: the space's *storage* at LLM size.

A d×d float64 Gram per distinct input is 41 GB for a Llama-7B-shaped layer set; PGU only ever protects
the top directions, so the rest of the spectrum is kept as two numbers. Peak memory is not reduced: the
Grams are collected dense, and a request densifies one layer at a time (d×d float64, 0.9 GB at d = 11008).

What is lost, stated: compression writes G = U_r Λ_r U_rᵀ + E₁, E₁ ⪰ 0, ‖E₁‖₂ = λ_{r+1}(G). A request
computes G̃ = U_r Λ_r U_rᵀ − G_forget = G_retain − E₁ (it may have negative eigenvalues, none below
−‖E₁‖₂) and keeps its top r non-negative eigenpairs S. Then G_retain − S ⪯ (‖E₁‖₂ + λ_{r+1}(G̃)) I from
above, and ⪰ −‖E₁‖₂ I from below, so ‖G_retain − S‖₂ ≤ ``dropped_bound``, the running sum of each
truncation's first dropped eigenvalue. For an update Δ projected away from the top-k eigenvectors of S,
the energy it puts on the retained inputs is

    Σ_i ‖Δ x_i‖² = tr(Δ G_retain Δᵀ) ≤ ‖Δ‖_F² · (λ_{k+1}(S) + dropped_bound)

against ‖Δ‖_F² · λ_{k+1}(G_retain) with the full Gram (tests/test_low_rank.py checks both inequalities
against the retain Gram computed from the data). The energy shares that pick k count the dropped
eigenvalues through their stored sums (√λ and λ); a request does not subtract its own energy from them
(the forget set's share there is unknown), so the shares err towards protecting more.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .energy import check_energy
from .errors import CGSMismatchError


@dataclass
class LowRankGram:
    values: torch.Tensor  # (r,) float64, descending, ≥ 0
    vectors: torch.Tensor  # (d, r) float32, orthonormal columns
    tail_sigma: float  # Σ √λ over the dropped eigenvalues
    tail_sigma2: float  # Σ λ over the dropped eigenvalues
    dropped_bound: float  # ≥ the spectral norm of everything dropped so far

    @classmethod
    def from_gram(cls, gram: torch.Tensor, rank: int, dropped_before: float = 0.0) -> LowRankGram:
        """The top ``rank`` eigenpairs of a symmetric PSD ``gram`` (negative round-off clamped to 0)."""
        if rank < 1:
            raise ValueError(f"rank must be at least 1, got {rank}")
        values, vectors = torch.linalg.eigh(gram.to(torch.float64))
        values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
        noise = values.max() * values.numel() * 10 * torch.finfo(values.dtype).eps  # round-off zeros (energy.py)
        values = torch.where(values > noise, values, torch.zeros_like(values))
        rank = min(rank, values.numel())
        tail = values[rank:]
        return cls(
            values=values[:rank].clone(),
            vectors=vectors[:, :rank].to(torch.float32).contiguous(),
            tail_sigma=float(tail.sqrt().sum()),
            tail_sigma2=float(tail.sum()),
            dropped_bound=dropped_before + (float(tail[0]) if tail.numel() else 0.0),
        )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.vectors.shape[0], self.vectors.shape[0])

    @property
    def rank_kept(self) -> int:
        return self.values.numel()

    @property
    def nbytes(self) -> int:
        return self.values.element_size() * self.values.numel() + self.vectors.element_size() * self.vectors.numel()

    def dense(self) -> torch.Tensor:
        """U_r Λ_r U_rᵀ in float64 (d×d: for a request's subtraction, one layer at a time)."""
        vectors = self.vectors.to(torch.float64)
        return (vectors * self.values) @ vectors.T

    def subtract(self, forget_gram: torch.Tensor) -> LowRankGram:
        """G̃ = U_r Λ_r U_rᵀ − G_forget, truncated to the same rank; the dropped tail sums carry over."""
        result = LowRankGram.from_gram(self.dense() - forget_gram.to(torch.float64), self.rank_kept,
                                       dropped_before=self.dropped_bound)
        result.tail_sigma += self.tail_sigma
        result.tail_sigma2 += self.tail_sigma2
        return result

    def _shares(self, energy: str) -> torch.Tensor | None:
        check_energy(energy)
        values = self.values.sqrt() if energy == "sigma" else self.values
        total = float(values.sum()) + (self.tail_sigma if energy == "sigma" else self.tail_sigma2)
        return torch.cumsum(values, 0) / total if total > 0 else None

    def energy_rank(self, gamma: float, energy: str) -> int:
        """Smallest k whose share of the whole spectrum's energy reaches γ, at most the rank kept."""
        share = self._shares(energy)
        if share is None:
            return 0
        k = int(torch.searchsorted(share, torch.tensor(gamma - 1e-12, dtype=share.dtype)).item()) + 1
        return min(k, self.rank_kept)

    def kept_share(self, energy: str) -> float:
        """The energy share the kept directions hold: below γ, the stored rank caps the protection."""
        share = self._shares(energy)
        return float(share[-1]) if share is not None and share.numel() else 1.0


def compress_grams(grams: dict, rank: int) -> dict:
    """Every dense Gram as a ``LowRankGram``; layers sharing one Gram share its compressed form."""
    compressed: dict[int, LowRankGram] = {}
    out = {}
    for name, gram in grams.items():
        if not isinstance(gram, LowRankGram) and id(gram) not in compressed:
            compressed[id(gram)] = LowRankGram.from_gram(gram, rank)
        out[name] = compressed.get(id(gram), gram)
    return out


def subtract_grams(grams: dict, forget_grams: dict) -> dict:
    """``grams`` minus ``forget_grams`` layer by layer, dense or low-rank, computed whole before returning; layers
    that share a Gram and have equal forget Grams (q, k and v) share one difference.

    A compressed Gram shared by several layers is subtracted once; their forget Grams must then be equal
    (they read the same input), else the request is refused and nothing has changed.
    """
    done: dict[int, tuple[LowRankGram, torch.Tensor]] = {}
    dense: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}  # per shared Gram: (forget Gram, difference)
    out = dict(grams)
    for name, gram in forget_grams.items():
        current = grams[name]
        if not isinstance(current, LowRankGram):  # equal differences are computed (and held) once
            made = dense.setdefault(id(current), [])
            twin = next((result for forget, result in made if forget is gram or torch.equal(forget, gram)), None)
            if twin is None:
                made.append((gram, current - gram.to(torch.float64)))
            out[name] = twin if twin is not None else made[-1][1]
            continue
        if id(current) not in done:
            done[id(current)] = (current.subtract(gram), gram)
        elif not torch.equal(done[id(current)][1], gram):
            raise CGSMismatchError(
                f"Layer '{name}' shares its compressed Gram with another layer, but their forget Grams differ: the "
                "inputs they read are no longer the same. Rebuild the space for this model."
            )
        out[name] = done[id(current)][0]
    return out
