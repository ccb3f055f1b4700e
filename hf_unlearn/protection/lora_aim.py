"""A fresh LoRA adapter's ``A``, aimed where the forget set's inputs differ from what is kept.

A LoRA layer adds ``s·B·A·x`` to its output, and PEFT starts ``B`` at zero, so early steps move only
``B`` and change the layer by ``s²·(−lr·G·Aᵀ)·A`` (``G`` the gradient a full weight would get). PGU
keeps the rows of ``A`` outside the retain space; a random ``A`` projected there catches only the
share of the forget inputs' energy that its ``r`` random rows happen to meet, and PGU crawled: MiniLM
on SMS spam through ``r = 8`` adapters took 34-71 s where fine-tuning from the same base took 23-26 s,
and a ViT's class was never removed (docs/benchmarks.md, "Through a fresh LoRA adapter").

While ``B`` is zero the adapter's output does not depend on ``A``, so ``A`` may be chosen without
changing a single prediction. Here its rows are the ``r`` directions outside the retain space that
carry most of the forget set's input energy (top eigenvectors of the forget Gram compressed to that
complement), divided by ``s``: a step on ``B`` then changes the layer exactly as a full-weight PGU step
restricted to those directions would, ``ΔW = −lr·G·U·Uᵀ``, whatever ``r``, ``lora_alpha`` or PEFT's
initialisation. Rows beyond the directions the forget set reaches are zero (they could not help).
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from ..core import CoreGradientSpace
from .peft import PEFT_PREFIX
from .sharded import is_sharded

logger = logging.getLogger(__name__)


def forget_directions(space: CoreGradientSpace, name: str, forget_gram: torch.Tensor, count: int) -> torch.Tensor:
    """Up to ``count`` orthonormal directions (columns, ``(d, k)``) outside the layer's retain space, ordered by
    the forget inputs' energy along them; directions with no forget energy are left out.

    A dense space's eigenvectors past the rank span the complement exactly; the forget Gram is compressed to them
    and decomposed there ((d − rank)² instead of d²: SmolLM2's 1536-wide down_proj takes 0.44 s whole). A low-rank
    space holds only its kept directions, so the complement is projected from the whole Gram instead.
    """
    gram = forget_gram.to(torch.float64)
    vectors = space.eigen(name)[1].to(torch.float64)  # first: the rank then reads the values this decomposition keeps
    rank = space.rank(name)
    if vectors.shape[1] == vectors.shape[0]:  # the whole eigenbasis: its tail is the complement
        outside = vectors[:, rank:]
        compressed = outside.T @ gram @ outside
        values, inner = torch.linalg.eigh((compressed + compressed.T) / 2)
        values, directions = values.flip(0), outside @ inner.flip(1)
    else:
        basis = vectors[:, :rank]
        projected = gram - basis @ (basis.T @ gram)  # P·F with P = I − M·Mᵀ
        projected = projected - (projected @ basis) @ basis.T  # P·F·P
        values, directions = torch.linalg.eigh((projected + projected.T) / 2)
        values, directions = values.flip(0), directions.flip(1)
        directions = directions - basis @ (basis.T @ directions)  # round-off only: they lie outside already
    if values.numel() == 0 or float(values[0]) <= 0:
        return directions[:, :0]
    kept = int((values[:count] > float(values[0]) * 1e-9).sum())
    return directions[:, :kept]


def is_fresh(module: nn.Module, adapter: str) -> bool:
    """A LoRA layer's adapter that has not learned anything yet (``B`` all zero, plain LoRA)."""
    if getattr(module, "use_dora", {}).get(adapter, False):
        return False
    lora_b = module.lora_B[adapter].weight
    return lora_b.numel() > 0 and not bool(torch.count_nonzero(lora_b))


@torch.no_grad()
def aim_fresh_adapters(model: nn.Module, space: CoreGradientSpace, forget_grams: dict[str, torch.Tensor]) -> list[str]:
    """Set every fresh LoRA ``A`` of the layers with a forget Gram to the forget directions (see the module text).

    Returns the ``layer#adapter`` keys aimed. Adapters that already learned (``B ≠ 0``), DoRA adapters and
    weights that are partitioned across processes keep PEFT's ``A`` (projected as before).
    """
    modules = dict(model.named_modules())
    aimed, cache = [], {}
    for name in forget_grams:
        module = modules.get(PEFT_PREFIX + name)
        if module is None or not hasattr(module, "lora_A"):
            continue
        for adapter, lora_a in module.lora_A.items():
            weight = lora_a.weight
            rows = weight.shape[0]
            whole = not is_sharded(weight) and weight.numel() == rows * space.layers[name].input_dim
            if not whole or not is_fresh(module, adapter):
                continue
            # layers fed one input (q, k, v) share one space Gram and have equal forget Grams: decompose once (eigen
            # before rank, which alone would decompose for the eigenvalues and let the eigenvectors go)
            space.eigen(name)
            key = (id(space.grams[name]), space.rank(name), rows)
            if key not in cache or not torch.equal(cache[key][0], forget_grams[name]):
                cache[key] = (forget_grams[name], forget_directions(space, name, forget_grams[name], rows))
            directions = cache[key][1]
            aim = torch.zeros(rows, weight[0].numel(), dtype=torch.float64)
            aim[: directions.shape[1]] = directions.T / float(module.scaling[adapter])
            weight.copy_(aim.view_as(weight).to(weight.dtype))
            aimed.append(f"{name}#{adapter}")
    if aimed:
        logger.info("Aimed %d fresh LoRA adapter(s) at the forget inputs outside the retain space", len(aimed))
    return aimed
