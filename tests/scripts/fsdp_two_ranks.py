"""Projected SGD on a model sharded by FSDP2 over two gloo processes (tests/test_fsdp.py runs it).

Writes the final full weights, and the Grams the sharded model collected, from rank 0.
"""

import sys

import torch
import torch.distributed as dist
from rank_exit import leave
from torch import nn
from torch.distributed.fsdp import fully_shard
from transformers.pytorch_utils import Conv1D

from hf_unlearn.core import CoreGradientSpace, collect_gram_matrices
from hf_unlearn.protection.updates import ProjectedUpdates

STEPS, LR = 6, 0.2


def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 10), nn.Tanh(), Conv1D(5, 10))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 6, generator=g) * torch.linspace(1.0, 0.05, 6)
    y = torch.randint(0, 5, (32,), generator=g)
    return model, x, y


def train(model, x, y, grams, layers, num_examples):
    """The same projected steps whatever the sharding: free output row 3 of layer 2, the rest projected."""
    space = CoreGradientSpace(grams, layers, num_examples, gamma=0.9, energy="sigma2")
    updates = ProjectedUpdates.for_layers(model, space.projectors())
    updates.leave_unprojected("2", [3])
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    for _ in range(STEPS):
        updates.snapshot()
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        updates.project()
    return space


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, x, y = build()
    for index in (0, 2, 4):
        fully_shard(model[index])
    fully_shard(model)
    half = len(x) // world
    mine = slice(rank * half, (rank + 1) * half)
    stats = collect_gram_matrices(model, [x[mine]], show_progress=False)  # each rank its shard, summed
    train(model, x[mine], y[mine], stats.grams, stats.layers, stats.num_examples)
    weights = {n: p.full_tensor().detach() for n, p in model.named_parameters()}
    if rank == 0:
        torch.save({"weights": weights, "grams": stats.grams, "world": world}, out)


if __name__ == "__main__":
    main(sys.argv[1])
    leave()
