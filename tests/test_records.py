"""The record of served requests cannot be rewritten by a new build, a hand edit or a forged Gram."""

import json

import pytest
import torch

from hf_unlearn.core import CoreGradientSpace, LedgerError
from hf_unlearn.data.forget import indices_of_classes
from hf_unlearn.models import SmallCNNForImageClassification
from hf_unlearn.scripts import unlearn as recipe

pytestmark = pytest.mark.usefixtures("one_thread")


def _recipe(model_path, out, *extra):
    return recipe.main(["--model_name_or_path", str(model_path), "--dataset_name", "digits", "--output_dir", str(out),
                        "--disable_tqdm", "true", "--logging_strategy", "no", *extra])


@pytest.fixture(scope="module")
def unlearned_folder(_trained, tmp_path_factory):
    """A model folder after one request (class 3 forgotten), with its space and ledger."""
    root = tmp_path_factory.mktemp("records")
    _trained.save_pretrained(root / "original")
    _recipe(root / "original", root / "first", "--forget_class", "3")
    assert len(_ledger(root / "first" / "core_gradient_space")) == 1
    return root / "first"


def _ledger(folder):
    return json.loads((folder / "cgs_config.json").read_text())["ledger"]


# ---------------------------------------------------------------------------------------------- carried ledger
def test_a_new_space_built_for_an_unlearned_folder_carries_its_ledger_and_refuses_the_repeat(
    unlearned_folder, digits, tmp_path
):
    fresh = tmp_path / "fresh_cgs"
    with pytest.raises(LedgerError, match="already forgotten by an earlier request"):
        _recipe(unlearned_folder, tmp_path / "again", "--forget_class", "3", "--core_gradient_space", str(fresh),
                "--build_core_gradient_space", "true")
    assert not (tmp_path / "again" / "model.safetensors").exists()
    built = CoreGradientSpace.from_pretrained(fresh)
    forgotten = len(indices_of_classes(digits["train"], [3]))
    assert [r["num_examples"] for r in built.ledger] == [forgotten]  # the history, copied
    assert built.num_examples == len(digits["train"]) - forgotten  # the forgotten rows left out of the build
    _recipe(unlearned_folder, tmp_path / "second", "--forget_class", "5", "--core_gradient_space", str(fresh),
            "--max_steps", "2")
    ledger = _ledger(tmp_path / "second" / "core_gradient_space")
    assert [r["num_examples"] for r in ledger] == [forgotten, len(indices_of_classes(digits["train"], [5]))]


def test_from_model_on_an_unlearned_folder_leaves_the_forgotten_rows_out_or_refuses(unlearned_folder, digits):
    model = SmallCNNForImageClassification.from_pretrained(unlearned_folder)
    train = digits["train"]
    rows = indices_of_classes(train, [3])
    space = CoreGradientSpace.from_model(model, train, show_progress=False)
    kept = CoreGradientSpace.from_model(model, train.select(sorted(set(range(len(train))) - set(rows))),
                                        show_progress=False)
    assert len(space.ledger) == 1 and space.num_examples == len(train) - len(rows)
    name = next(iter(space.grams))
    torch.testing.assert_close(space.grams[name], kept.grams[name], rtol=1e-10, atol=1e-8)
    with pytest.raises(LedgerError, match="already forgotten"):
        space.check_request(space.train_fingerprints[torch.tensor(rows[:2])])
    batches = [{"pixel_values": train[:8]["pixel_values"]}]
    with pytest.raises(LedgerError, match="needs the training set as a datasets.Dataset"):
        CoreGradientSpace.from_model(model, batches, show_progress=False)
    with pytest.raises(LedgerError, match="lacks"):
        CoreGradientSpace.from_model(model, train.select_columns(["pixel_values"]), show_progress=False)
