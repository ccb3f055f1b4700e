"""Remove from a weight update every component that would change a layer's output on kept inputs.

For a layer y = W x and a protected basis M (d × k, orthonormal columns), an update ΔW leaves y
unchanged for every x in span(M) exactly when ΔW M = 0. The projection ΔW ← ΔW − (ΔW M) Mᵀ does
that with two thin products; the d × d projector is never formed. When k > d/2 the orthonormal
complement C (d × (d−k)) is smaller, and ΔW ← (ΔW C) Cᵀ gives the same result for less work.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .layers import TRANSPOSED_LINEAR, LayerInfo


def project_out(
    delta: torch.Tensor, basis: torch.Tensor, *, complement: bool = False, transposed: bool = False
) -> torch.Tensor:
    """``delta`` with its component along ``span(basis)`` removed.

    ``delta`` has the weight's own shape. Linear/Conv weights are viewed as ``(out, d)`` and the
    projector acts on the right; a transposed layer (transformers' ``Conv1D``, weight ``(d, out)``)
    is projected on the left. With ``complement=True``, ``basis`` spans the *free* directions and the
    update is projected onto it instead.
    """
    if transposed:
        inner = basis @ (basis.T @ delta)
        return inner if complement else delta - inner
    matrix = delta.reshape(delta.shape[0], -1)
    inner = (matrix @ basis) @ basis.T
    out = inner if complement else matrix - inner
    return out.reshape(delta.shape)


@dataclass
class LayerProjector:
    """The protected basis of one layer, laid out for the cheapest projection of its updates."""

    basis: torch.Tensor  # (d, k) protected directions, or (d, d − k) free ones when complement
    complement: bool
    transposed: bool
    rank: int  # k: the number of protected directions

    @classmethod
    def from_eigenbasis(cls, eigenvectors: torch.Tensor, rank: int, info: LayerInfo) -> LayerProjector:
        """``eigenvectors`` sorted by decreasing eigenvalue; the first ``rank`` are protected."""
        dim = eigenvectors.shape[0]
        complement = rank > dim - rank
        basis = eigenvectors[:, rank:] if complement else eigenvectors[:, :rank]
        return cls(
            basis=basis.contiguous(),
            complement=complement,
            transposed=info.kind == TRANSPOSED_LINEAR,
            rank=rank,
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> LayerProjector:
        return LayerProjector(self.basis.to(device=device, dtype=dtype), self.complement, self.transposed, self.rank)

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        if self.rank == 0 and not self.complement:
            return delta
        return project_out(delta, self.basis, complement=self.complement, transposed=self.transposed)
