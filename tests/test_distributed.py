"""Two real processes (gloo) must give the same Gram as one process over all the data."""

import sys

import pytest
import torch
from distributed_fixtures import ROOT, SCRIPTS, launch_two_ranks

from hf_unlearn.core import collect_gram_matrices

SCRIPT = SCRIPTS / "gram_two_ranks.py"


@pytest.mark.distributed
def test_two_processes_give_the_same_gram_as_one(tmp_path):
    out = tmp_path / "grams.pt"
    launch_two_ranks([SCRIPT, out], timeout=240)
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
    recipe = ROOT / "recipes" / "unlearn.py"
    launch_two_ranks([recipe, "--model_name_or_path", model_dir, "--dataset_name", "digits", "--forget_class", "3",
                      "--output_dir", out, "--use_cpu", "true", "--ddp_find_unused_parameters", "false",
                      "--disable_tqdm", "true", "--logging_strategy", "no"])

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

    launch_two_ranks([SCRIPTS / "sisa_two_ranks.py", tmp_path], timeout=300)
    outcome = json.loads((tmp_path / "result.json").read_text())
    assert outcome["world"] == 2 and outcome["pending"] == [] and outcome["equal"]
    assert outcome["files"] == [f"shard-{s}/slice-{j}/model.safetensors" for s in (0, 1) for j in (0, 1)]
