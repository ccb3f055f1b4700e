"""FSDP2 on CPU (gloo): Grams from a sharded model, and projected updates of sharded weights, match one process."""

import sys

import pytest
import torch
from distributed_fixtures import SCRIPTS, launch_two_ranks

from hf_unlearn.core import collect_gram_matrices

SCRIPT = SCRIPTS / "fsdp_two_ranks.py"


@pytest.mark.distributed
def test_two_fsdp_processes_end_with_the_weights_of_one(tmp_path, one_thread):
    out = tmp_path / "fsdp.pt"
    launch_two_ranks([SCRIPT, out], timeout=240)
    two = torch.load(out)
    assert two["world"] == 2

    sys.path.insert(0, str(SCRIPT.parent))
    from fsdp_two_ranks import build, train

    model, x, y = build()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    stats = collect_gram_matrices(model, [x], show_progress=False)
    for name, gram in stats.grams.items():  # hooks on a sharded model see whole inputs
        torch.testing.assert_close(two["grams"][name], gram, rtol=1e-10, atol=1e-10)
    space = train(model, x, y, stats.grams, stats.layers, stats.num_examples)
    for name, weight in model.named_parameters():
        torch.testing.assert_close(two["weights"][name], weight.detach(), rtol=1e-5, atol=1e-6)
    # and the sharded run's updates stay out of the protected space (row 3 of layer 2 is free by design)
    for layer, transposed in (("0", False), ("2", False), ("4", True)):
        basis = space.basis(layer).float()
        change = two["weights"][f"{layer}.weight"] - start[f"{layer}.weight"]
        inside = basis.T @ change if transposed else change @ basis
        if layer == "2":
            assert inside[3].abs().max() > 1e-3  # the free row moved inside the space
            inside = torch.cat([inside[:3], inside[4:]])
        assert change.abs().max() > 1e-3 and inside.abs().max() < 1e-5 * max(1.0, change.abs().max()), layer


def test_a_sharding_layout_other_than_fsdps_rows_is_refused_by_name():
    from types import SimpleNamespace

    from torch.distributed.tensor import Replicate, Shard

    from hf_unlearn.core import UnsupportedSetupError
    from hf_unlearn.protection.sharded import check_row_sharding

    check_row_sharding("fc", SimpleNamespace(placements=(Shard(0),)))  # FSDP's layout: accepted
    for placements in [(Shard(1),), (Replicate(),), (Shard(0), Shard(0))]:
        with pytest.raises(UnsupportedSetupError, match="'fc'.*Shard\\(0\\)"):
            check_row_sharding("fc", SimpleNamespace(placements=placements))
