"""Run under torchrun: each rank collects the Gram of its half of the data; rank 0 saves the sum."""

import sys

import torch
import torch.distributed as dist
from rank_exit import leave
from torch import nn

from hf_unlearn.core import collect_gram_matrices


def build():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3, stride=2), nn.Flatten(), nn.Linear(2 * 3 * 3, 3))
    data = torch.randn(24, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return model, data


if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    model, data = build()
    shard = data[rank::world]
    stats = collect_gram_matrices(model, list(shard.split(5)), show_progress=False)
    if rank == 0:
        torch.save({"grams": stats.grams, "n": stats.num_examples, "world": world}, sys.argv[1])
    leave()
