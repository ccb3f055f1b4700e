"""Projecting the updates of weights that FSDP2 shards across processes (DTensor, rows split on dim 0).

An input-space projection acts on the right of an ``(out, in)`` weight, ΔW ↦ ΔW (I − B Bᵀ): every row
is projected on its own, so a process holding rows a..b of W gets exactly rows a..b of the projected
full update from its own shard, with no communication. That is verified, not assumed
(``tests/test_fsdp.py`` compares it with the projection of the gathered update). Two cases need the
whole weight and gather it: a transposed layer (transformers' ``Conv1D``, ``(in, out)``), whose row
shards split the *input* dimension the projection mixes, and a layer with free output rows (class
removal), whose rows are named globally. Each process then keeps its own rows of the result.
"""

from __future__ import annotations

import torch

from ..core.errors import UnsupportedSetupError

try:  # torch >= 2.4
    from torch.distributed.tensor import DTensor, Shard
except ImportError:  # pragma: no cover - older torch: nothing is ever a DTensor
    DTensor, Shard = (), ()


def is_sharded(weight: torch.Tensor) -> bool:
    return bool(DTensor) and isinstance(weight, DTensor)


def check_row_sharding(name: str, weight: torch.Tensor) -> None:
    """Only FSDP's layout is understood: sharded on dim 0 over one mesh dimension."""
    placements = tuple(weight.placements)
    if len(placements) != 1 or not (isinstance(placements[0], Shard) and placements[0].dim == 0):
        raise UnsupportedSetupError(
            f"Weight of {name!r} is a DTensor placed as {placements}; projected updates support FSDP's row "
            "sharding (Shard(0) on one mesh dimension) only."
        )


def local_rows(full: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """This process's rows of ``full``, laid out as ``weight``'s local shard (torch.chunk on dim 0)."""
    mesh = weight.device_mesh
    chunks = torch.chunk(full, mesh.size(), dim=0)
    rank = mesh.get_local_rank()
    local = chunks[rank] if rank < len(chunks) else full[:0]
    if local.shape != weight.to_local().shape:
        raise RuntimeError(
            f"Unexpected shard layout: rows {tuple(local.shape)} against the local shard "
            f"{tuple(weight.to_local().shape)}"
        )
    return local
