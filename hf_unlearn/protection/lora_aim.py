"""A fresh LoRA adapter's ``A``, aimed where the forget set's inputs differ from what is kept.

A LoRA layer adds ``s·B·A·x`` to its output, and PEFT starts ``B`` at zero, so early steps move only
``B`` and change the layer by ``s²·(−lr·G·Aᵀ)·A`` (``G`` the gradient a full weight would get). PGU
keeps the rows of ``A`` outside the retain space; a random ``A`` projected there catches only the
share of the forget inputs' energy that its ``r`` random rows happen to meet, and PGU crawled: MiniLM
on SMS spam through ``r = 8`` adapters took 34-71 s where fine-tuning from the same base took 23-26 s,
and a ViT's class was never removed (docs/benchmarks.md, eighth session).

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
    the forget inputs' energy along them; directions with no forget energy are left out."""
    basis = space.basis(name).to(torch.float64)  # (d, rank): the retain space at the run's gamma
    gram = forget_gram.to(torch.float64)
    outside = gram - basis @ (basis.T @ gram)  # P·F with P = I − M·Mᵀ
    outside = outside - (outside @ basis) @ basis.T  # P·F·P
    values, vectors = torch.linalg.eigh((outside + outside.T) / 2)
    values, vectors = values.flip(0), vectors.flip(1)
    floor = max(float(values[0]), 0.0) * 1e-9
    kept = int((values[:count] > floor).sum()) if float(values[0]) > 0 else 0
    directions = vectors[:, :kept]
    return directions - basis @ (basis.T @ directions)  # round-off only: they lie outside already


def is_fresh(module: nn.Module, adapter: str) -> bool:
    """A LoRA layer's adapter that has not learned anything yet (``B`` all zero, plain LoRA)."""
    if getattr(module, "use_dora", {}).get(adapter, False):
        return False
    lora_b = module.lora_B[adapter].weight
    return lora_b.numel() > 0 and not bool(torch.count_nonzero(lora_b))


@torch.no_grad()
def aim_fresh_adapters(
    model: nn.Module, space: CoreGradientSpace, forget_grams: dict[str, torch.Tensor], layer_names
) -> list[str]:
    """Set every fresh LoRA ``A`` of the protected layers to the forget directions (see the module text).

    Returns the ``layer#adapter`` keys aimed. Adapters that already learned (``B ≠ 0``), DoRA adapters and
    weights that are partitioned across processes keep PEFT's ``A`` (projected as before).
    """
    modules = dict(model.named_modules())
    aimed, cache = [], {}
    for name in layer_names:
        module = modules.get(PEFT_PREFIX + name)
        if module is None or not hasattr(module, "lora_A") or name not in forget_grams:
            continue
        for adapter, lora_a in module.lora_A.items():
            weight = lora_a.weight
            rows = weight.shape[0]
            whole = not is_sharded(weight) and weight.numel() == rows * space.layers[name].input_dim
            if not whole or not is_fresh(module, adapter):
                continue
            key = (id(forget_grams[name]), id(space.grams[name]), space.rank(name), rows)  # q, k, v: one input
            if key not in cache:
                cache[key] = forget_directions(space, name, forget_grams[name], rows)
            directions = cache[key]
            aim = torch.zeros(rows, weight[0].numel(), dtype=torch.float64)
            aim[: directions.shape[1]] = directions.T / float(module.scaling[adapter])
            weight.copy_(aim.view_as(weight).to(weight.dtype))
            aimed.append(f"{name}#{adapter}")
    if aimed:
        logger.info("Aimed %d fresh LoRA adapter(s) at the forget inputs outside the retain space", len(aimed))
    return aimed
