"""``hf-unlearn cgs build|info``: a space built once from a saved model, found by the trainer, inspected."""

import json

import pytest
import torch

from hf_unlearn.cli import main as cli
from hf_unlearn.core import CoreGradientSpace
from hf_unlearn.scripts import cgs


@pytest.fixture
def text_model(tmp_path):
    from text_fixtures import save_text_model, write_messages

    torch.set_num_threads(1)
    messages = write_messages(tmp_path / "messages.csv", n=60)
    return save_text_model(tmp_path / "model", messages, epochs=1), messages


def test_build_writes_the_space_where_the_trainer_finds_it_and_refuses_to_overwrite(text_model, capsys):
    model, messages = text_model
    argv = ["cgs", "build", "--model_name_or_path", str(model), "--data_files", str(messages),
            "--text_column", "text", "--label_column", "label", "--gamma", "0.9"]
    cli(argv)
    space = CoreGradientSpace.from_pretrained(model / "core_gradient_space")
    assert space.num_examples == 60 and space.gamma == 0.9 and "text" in space.fingerprint_columns
    from transformers import AutoModelForSequenceClassification

    from hf_unlearn.protection import space_saved_with

    found, where = space_saved_with(AutoModelForSequenceClassification.from_pretrained(model))
    assert where == str(model / "core_gradient_space") and found.num_examples == 60  # and it fits the model
    with pytest.raises(FileExistsError, match="--overwrite true"):
        cli(argv)


def test_info_reports_layers_ranks_ledger_and_size(text_model, capsys):
    model, messages = text_model
    cli(["cgs", "build", "--model_name_or_path", str(model), "--data_files", str(messages),
         "--text_column", "text", "--label_column", "label"])
    capsys.readouterr()
    facts = cgs.main(["info", str(model / "core_gradient_space"), "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(facts))
    space = CoreGradientSpace.from_pretrained(model / "core_gradient_space")
    assert [layer["rank"] for layer in facts["layers"]] == [space.rank(n) for n in space.layers]
    assert facts["ledger"] == [] and facts["size_bytes"] > 0 and facts["num_examples"] == 60
    cli(["cgs", "build", "--model_name_or_path", str(model), "--data_files", str(messages), "--text_column", "text",
         "--label_column", "label", "--low_rank", "4", "--overwrite", "true"])
    capsys.readouterr()
    compressed = cgs.main(["info", str(model / "core_gradient_space"), "--json"])
    assert {layer["stored_rank"] for layer in compressed["layers"]} == {4}
    assert all(layer["rank"] <= 4 for layer in compressed["layers"])
    assert compressed["size_bytes"] < facts["size_bytes"] / 2


def test_cgs_without_a_subcommand_prints_usage():
    with pytest.raises(SystemExit) as exit_info:
        cgs.main([])
    assert exit_info.value.code == 2
