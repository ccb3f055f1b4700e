"""Projected SGD (momentum) on gradients under a DeepSpeed ZeRO engine, two gloo processes (tests/test_deepspeed.py).

Each rank trains on its half of every batch; rank 0 writes the final whole weights (gathered under ZeRO-3)
and the start weights. ``python deepspeed_two_ranks.py STAGE OUT [offset]`` under torch.distributed.run;
``offset`` adds a free output row whose frozen bias is offset after every step (ZeRO-2: a frozen bias is
not partitioned away, and no master copy of it exists).
"""

import sys

import deepspeed
import torch
from deepspeed.runtime.zero import GatheredParameters
from rank_exit import leave
from torch import nn

from hf_unlearn.core import CoreGradientSpace, collect_gram_matrices
from hf_unlearn.protection.gradients import ProjectedGradients
from hf_unlearn.protection.updates import ProjectedUpdates

STEPS, LR, MOMENTUM = 4, 0.1, 0.9


def build(offset: bool = False, hooked: bool = True):
    """With ``offset``: output row 3 is free and offset through the (frozen) bias against a kept mean that points
    away from the data, so lowering that output on the data raises it there (class removal, binary case)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 5))
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8, generator=g) * torch.linspace(1.0, 0.05, 8)
    y = torch.randint(0, 5, (16,), generator=g)
    stats = collect_gram_matrices(model, [x], show_progress=False)
    space = CoreGradientSpace(stats.grams, stats.layers, stats.num_examples, gamma=0.9, energy="sigma2")
    updates = ProjectedUpdates.for_layers(model, space.projectors())
    if offset:
        model[2].bias.requires_grad_(False)
        updates.leave_unprojected("2", [3], kept_mean=-torch.tanh(model[0](x)).mean(0).detach(), bias=model[2].bias)
    hooks = ProjectedGradients(updates) if hooked else None
    if hooks:
        hooks.attach()
    return model, space, x, y, updates, hooks


def loss_of(output: torch.Tensor, y: torch.Tensor, offset: bool) -> torch.Tensor:
    return output[:, 3].mean() + nn.functional.cross_entropy(output, y) if offset else nn.functional.cross_entropy(
        output, y)


def main(stage: int, out: str, offset: bool = False) -> None:
    deepspeed.init_distributed(dist_backend="gloo")
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    model, _, x, y, _, hooks = build(offset)
    start = {k: v.detach().clone() for k, v in model.state_dict().items()}
    config = {
        "train_micro_batch_size_per_gpu": len(x) // world, "gradient_accumulation_steps": 1,
        "zero_allow_untested_optimizer": True, "zero_optimization": {"stage": stage},
        "optimizer": {"type": "SGD", "params": {"lr": LR, "momentum": MOMENTUM}},
    }
    trainable = [p for p in model.parameters() if p.requires_grad]
    engine, *_ = deepspeed.initialize(model=model, model_parameters=trainable, config=config)
    part = slice(rank * len(x) // world, (rank + 1) * len(x) // world)
    for _ in range(STEPS):
        hooks.before_step()
        engine.backward(loss_of(engine(x[part]), y[part], offset))
        engine.step()
        hooks.after_step()
    with GatheredParameters(list(engine.module.parameters()), enabled=stage == 3):
        final = {k: v.detach().clone() for k, v in engine.module.state_dict().items()}
    if rank == 0:
        torch.save({"world": world, "start": start, "final": final}, out)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], offset=len(sys.argv) > 3 and sys.argv[3] == "offset")
    leave()
