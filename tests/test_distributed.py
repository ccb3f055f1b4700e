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
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
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


@pytest.mark.distributed
def test_recipe_under_two_processes_builds_and_updates_the_same_space(trained_model, digits, tmp_path):
    """torchrun, 2 gloo processes: each collects statistics on its shard; the sums must be exact."""
    from hf_unlearn.core import CoreGradientSpace, collect_gram_matrices, fingerprint_examples
    from hf_unlearn.data.forget import indices_of_classes, split_forget_retain

    model_dir, out = tmp_path / "original", tmp_path / "run"
    trained_model.save_pretrained(model_dir)
    recipe = Path(__file__).parents[1] / "recipes" / "unlearn.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(recipe), "--model_name_or_path", str(model_dir), "--dataset_name", "digits", "--forget_class", "3",
           "--output_dir", str(out), "--use_cpu", "true", "--ddp_find_unused_parameters", "false",
           "--disable_tqdm", "true", "--logging_strategy", "no"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]

    saved = CoreGradientSpace.from_pretrained(out / "core_gradient_space")
    train = digits["train"]
    forget, _ = split_forget_retain(train, indices_of_classes(train, [3]))
    expected = CoreGradientSpace.from_model(trained_model, train, show_progress=False)
    expected.subtract(collect_gram_matrices(trained_model, forget, show_progress=False),
                      fingerprint_examples(forget, train.column_names))
    assert saved.num_examples == expected.num_examples == len(train) - len(forget)
    assert [r["num_examples"] for r in saved.ledger] == [len(forget)]
    for name, gram in expected.grams.items():
        assert ((saved.grams[name] - gram).norm() / gram.norm()).item() < 1e-10


@pytest.mark.distributed
def test_sisa_under_two_processes_deletes_exactly(tmp_path):
    """torchrun, 2 gloo processes: one writer, and the deletion still equals retraining the shard from scratch."""
    import json

    script = Path(__file__).parent / "scripts" / "sisa_two_ranks.py"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MASTER_ADDR": "127.0.0.1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
           str(script), str(tmp_path)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["world"] == 2 and outcome["pending"] == [] and outcome["equal"]
    assert outcome["files"] == [f"shard-{s}/slice-{j}/model.safetensors" for s in (0, 1) for j in (0, 1)]
