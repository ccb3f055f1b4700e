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
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # a known user error: one line, exit status 2
        cli(argv)
    assert exit_info.value.code == 2 and "--overwrite true" in capsys.readouterr().err
    with pytest.raises(FileExistsError, match="--overwrite true"):
        cgs.main(argv[1:])  # the command itself raises it


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


def test_the_space_records_how_texts_were_cut_and_later_runs_reuse_or_refuse_it(text_model, tmp_path, caplog):
    """Built at 4 tokens (the messages have 6): the recipe cuts at 4 too unless told otherwise, and refuses 8."""
    from hf_unlearn.scripts import unlearn as recipe

    model, messages = text_model
    with caplog.at_level("WARNING", logger="hf_unlearn.data.loading"):
        cli(["cgs", "build", "--model_name_or_path", str(model), "--data_files", str(messages), "--text_column",
             "text", "--label_column", "label", "--max_length", "4"])
    assert "60 of 60 train texts are longer than max_length 4" in caplog.text
    facts = cgs.describe(model / "core_gradient_space")
    assert facts["tokenization"]["max_length"] == 4 and facts["tokenization"]["truncation"] is True
    common = ["--model_name_or_path", str(model), "--data_files", str(messages), "--text_column", "text",
              "--label_column", "label", "--forget_filter", 'text contains "prize"', "--disable_tqdm", "true",
              "--logging_strategy", "no"]
    with pytest.raises(ValueError, match="--max_length 8 differs from the max_length 4"):
        recipe.main([*common, "--max_length", "8", "--output_dir", str(tmp_path / "refused")])
    assert not (tmp_path / "refused" / "model.safetensors").exists()
    recipe.main([*common, "--output_dir", str(tmp_path / "run")])  # the rows are recognised: cut as in the build
    ledger = CoreGradientSpace.from_pretrained(tmp_path / "run" / "core_gradient_space").ledger
    wanted = sum("prize" in line for line in messages.read_text().splitlines()[1:])
    assert [entry["num_examples"] for entry in ledger] == [wanted]


def test_another_tokenizer_than_the_spaces_is_refused_by_name(text_model):
    from transformers import AutoTokenizer

    from hf_unlearn.data.tokenization import check_tokenizer, tokenization_record

    model, _ = text_model
    tokenizer = AutoTokenizer.from_pretrained(model)
    record = tokenization_record(tokenizer, 16)
    check_tokenizer(record, tokenizer, "here")  # its own tokenizer passes
    other = AutoTokenizer.from_pretrained(model)
    other.add_tokens(["newword"])
    with pytest.raises(ValueError, match="is not the one the Core Gradient Space in here was built with"):
        check_tokenizer(record, other, "here")
