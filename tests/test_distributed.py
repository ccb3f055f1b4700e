"""Two real processes (gloo) must give the same Gram as one process over all the data."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_unlearn.core import collect_gram_matrices

SCRIPT = Path(__file__).parent / "scripts" / "gram_two_ranks.py"


@pytest.mark.distributed
def test_two_processes_give_the_same_gram_as_one(tmp_path):
    out = tmp_path / "grams.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           str(SCRIPT), str(out)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    two = torch.load(out)
    assert two["world"] == 2

    sys.path.insert(0, str(SCRIPT.parent))
    from gram_two_ranks import build

    model, data = build()
    one = collect_gram_matrices(model, list(data.split(5)), show_progress=False)
    assert two["n"] == one.num_examples == 24
    for name, gram in one.grams.items():
        assert ((two["grams"][name] - gram).norm() / gram.norm()).item() < 1e-12
