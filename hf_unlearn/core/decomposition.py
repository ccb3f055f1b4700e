"""Eigendecompositions of a space's Grams, and the projectors made from them, one dense Gram at a time.

A d×d float64 eigenbasis weighs as much as its Gram (806 MB for SmolLM2-135M's 120 distinct inputs), and a
run needs it only long enough to cut the float32 projector out of it. So ``dense_projectors`` decomposes each
distinct Gram, makes the projectors of every layer that reads it, and lets the eigenvectors go before the next
Gram; only the eigenvalues stay (ranks and summaries read them). Layers that share a Gram and a rank share one
float32 basis. The numbers are those of a cached decomposition: the same ``eigh`` of the same Gram, cut the same way.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping

import torch

from .energy import energy_rank
from .gram_checks import check_spectrum
from .layers import TRANSPOSED_LINEAR, LayerInfo
from .low_rank import LowRankGram
from .projection import LayerProjector

logger = logging.getLogger(__name__)


def decompose(gram: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (descending, round-off negatives clamped to 0) and eigenvectors of one dense Gram."""
    values, vectors = torch.linalg.eigh(gram)
    check_spectrum(values, "The Core Gradient Space", name)  # a negated or forged Gram is refused
    return values.flip(0).clamp_min(0.0), vectors.flip(1)


def groups_by_gram(grams: Mapping[str, torch.Tensor], names: Iterable[str]) -> list[list[str]]:
    """``names`` grouped by the Gram tensor they read (layers fed one input share one), in order of first use."""
    groups: dict[int, list[str]] = {}
    for name in names:
        groups.setdefault(id(grams[name]), []).append(name)
    return list(groups.values())


def dense_projectors(
    grams: Mapping[str, torch.Tensor],
    layers: Mapping[str, LayerInfo],
    names: Iterable[str],
    gamma_for: Callable[[str], float],
    energy: str,
    cached: Callable[[str], tuple[torch.Tensor, torch.Tensor] | None],
    keep_values: Callable[[str, torch.Tensor], None],
    device: torch.device | str,
    dtype: torch.dtype,
) -> dict[str, LayerProjector]:
    """The projectors of the dense layers ``names``, one distinct Gram decomposed (or read from ``cached``) at a
    time; ``keep_values`` receives each layer's eigenvalues."""
    out: dict[str, LayerProjector] = {}
    for group in groups_by_gram(grams, names):
        found = cached(group[0])
        values, vectors = found if found is not None else decompose(grams[group[0]], group[0])
        made: dict[int, LayerProjector] = {}  # one float32 basis per rank among the layers of this Gram
        for name in group:
            keep_values(name, values)
            rank = energy_rank(values, gamma_for(name), energy)
            if rank not in made:
                made[rank] = LayerProjector.from_eigenbasis(vectors, rank, layers[name]).to(device, dtype)
            out[name] = dataclasses.replace(made[rank], transposed=layers[name].kind == TRANSPOSED_LINEAR)
        del values, vectors, made
    return out


class SpaceDecompositions:
    """The bases, ranks and projectors of ``CoreGradientSpace`` (which holds ``grams``, ``layers``, ``energy`` and
    ``gamma_for``), derived from its Grams on demand."""

    grams: dict
    layers: dict[str, LayerInfo]
    energy: str
    gamma: float
    gamma_for: Callable[[str], float]
    _values: dict[str, torch.Tensor]  # eigenvalues of every decomposed layer
    _vectors: dict[str, torch.Tensor]  # eigenvectors, only of layers whose ``eigen`` was asked for

    def eigen(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Eigenvalues (descending, round-off negatives clamped to 0) and eigenvectors of the Gram, kept once asked for.

        For a low-rank layer only the kept eigenpairs, ``(r,)`` and ``(d, r)``.
        """
        gram = self.grams[name]
        if isinstance(gram, LowRankGram):
            return gram.values, gram.vectors.to(torch.float64)
        if name not in self._vectors:
            # layers fed the same input (q, k, v) hold one shared Gram: decompose it once (see shared_grams.py)
            self._values[name], self._vectors[name] = self._cached_eigen(name) or decompose(gram, name)
        return self._values[name], self._vectors[name]

    def _twin(self, cache: dict, name: str) -> str | None:
        return next((other for other in cache if self.grams[other] is self.grams[name]), None)

    def _cached_eigen(self, name: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The decomposition ``eigen`` holds for ``name`` or a layer sharing its Gram, else None."""
        twin = self._twin(self._vectors, name)
        return (self._values[twin], self._vectors[twin]) if twin is not None else None

    def _spectrum(self, name: str) -> torch.Tensor:
        """A dense layer's eigenvalues: from a decomposition made earlier, else one made now (its vectors let go)."""
        if name not in self._values:
            twin = self._twin(self._values, name)
            self._values[name] = self._values[twin] if twin is not None else decompose(self.grams[name], name)[0]
        return self._values[name]

    def rank(self, name: str) -> int:
        gram = self.grams[name]
        if isinstance(gram, LowRankGram):
            return gram.energy_rank(self.gamma_for(name), self.energy)
        return energy_rank(self._spectrum(name), self.gamma_for(name), self.energy)

    def basis(self, name: str) -> torch.Tensor:
        """The protected directions of a layer, ``(d, k)`` with orthonormal columns."""
        return self.eigen(name)[1][:, : self.rank(name)]

    def projectors(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
        names: Iterable[str] | None = None,
    ) -> dict[str, LayerProjector]:
        """Each layer's projector; ``names``: only those layers (a layer whose weight does not move needs no
        decomposition: LoRA on a few modules leaves the others frozen)."""
        wanted = self.layers if names is None else set(names)
        unknown = sorted(set(wanted) - set(self.layers))
        if unknown:
            raise KeyError(f"The space protects no layer(s) {unknown[:5]}.")
        out, capped = {}, []
        for name, info in self.layers.items():
            gram = self.grams.get(name)
            if name not in wanted or not isinstance(gram, LowRankGram):
                continue
            rank = self.rank(name)  # only the kept directions exist: never the complement form
            if gram.kept_share(self.energy) < self.gamma_for(name) - 1e-9:
                capped.append(f"{name} ({100 * gram.kept_share(self.energy):.1f} %)")
            projector = LayerProjector(gram.vectors[:, :rank].contiguous(), False, info.kind == TRANSPOSED_LINEAR, rank)
            out[name] = projector.to(device or "cpu", dtype)
        dense = [n for n in self.layers if n in wanted and not isinstance(self.grams[n], LowRankGram)]
        out.update(dense_projectors(self.grams, self.layers, dense, self.gamma_for, self.energy, self._cached_eigen,
                                    self._values.__setitem__, device or "cpu", dtype))
        out = {name: out[name] for name in self.layers if name in out}
        if capped:
            logger.warning(
                "The low-rank space's stored rank caps the protection of %d layer(s) below gamma=%g: %s hold only "
                "that share of their energy. Compress with a larger rank, or use a smaller gamma.",
                len(capped), self.gamma, ", ".join(capped[:5]) + (" ..." if len(capped) > 5 else ""),
            )
        return out

    def clear_decompositions(self, keep_values: bool = False) -> None:
        """Forget every eigendecomposition made so far (the Grams changed, or a benchmark times a fresh one);
        ``keep_values``: only the eigenvectors, once the projectors are made (the ranks still read the values)."""
        if not keep_values:
            self._values.clear()
        self._vectors.clear()

