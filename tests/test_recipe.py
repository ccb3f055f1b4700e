"""The recipe end to end on the embedded digits data: YAML + CLI overrides, forget selection, outputs."""

import json

import pytest
import torch

from hf_unlearn.scripts.unlearn import main, parse_args


@pytest.fixture
def saved_model(trained_model, tmp_path):
    path = tmp_path / "original"
    trained_model.save_pretrained(path)
    return path


def test_yaml_config_with_command_line_overrides(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("model_name_or_path: some/model\ndataset_name: digits\nforget_class: [3, 5]\n"
                      f"output_dir: {tmp_path}\ngamma: 0.7\n")
    script, forget, args = parse_args(["--config", str(config), "--gamma", "0.9"])
    assert script.model_name_or_path == "some/model" and script.dataset_name == "digits"
    assert forget.forget_class == [3, 5] and args.gamma == 0.9  # the command line wins over the file
    assert args.method == "auto" and args.learning_rate == 0.25  # unset: PGU's recommended value (the default path)


def test_method_hyperparameters_from_yaml_and_command_line(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name_or_path: m\noutput_dir: {tmp_path}\nmethod: scrub\nscrub_alpha: 0.5\n"
                      "learning_rate: 0.01\n")
    _, _, args = parse_args(["--config", str(config), "--scrub_temperature", "2"])
    assert args.method_config.scrub_alpha == 0.5 and args.method_config.scrub_temperature == 2.0
    assert args.learning_rate == 0.01 and args.num_train_epochs == 5.0  # the user's rate, the method's epochs
    _, _, args = parse_args(["--model_name_or_path", "m", "--output_dir", str(tmp_path), "--method", "npo",
                             "--method_kwargs", '{"npo_beta": 0.2}'])
    assert args.method_config.npo_beta == 0.2


def test_unknown_yaml_keys_are_refused_by_name(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(f"model_name_or_path: m\noutput_dir: {tmp_path}\nlearning_rat: 0.1\nscrub_alpha: 0.5\n")
    with pytest.raises(ValueError, match="learning_rat, scrub_alpha.*scrub_alpha is a hyperparameter of scrub"):
        parse_args(["--config", str(config)])


def test_recipe_forgets_a_class_and_writes_checkpoint_space_and_card(saved_model, tmp_path):
    out = tmp_path / "run"
    torch.set_num_threads(1)
    metrics = main(["--model_name_or_path", str(saved_model), "--dataset_name", "digits", "--forget_class", "3",
                    "--output_dir", str(out), "--disable_tqdm", "true", "--logging_strategy", "no"])
    assert metrics["eval_forget_accuracy"] <= 5.0
    assert (out / "model.safetensors").is_file()
    saved = json.loads((out / "core_gradient_space" / "cgs_config.json").read_text())
    assert [r["num_examples"] for r in saved["ledger"]] == [122]  # every "3" of the digits training split
    card = (out / "README.md").read_text()
    assert "`pgu_retain`" in card and "Not measured" in card  # the default path with a retain set
    assert json.loads((out / "unlearning_metrics.json").read_text()) == metrics


def test_recipe_rejects_an_index_file_outside_the_training_set(saved_model, tmp_path):
    index_file = tmp_path / "forget.txt"
    index_file.write_text("1\n2\n999999\n")
    with pytest.raises(ValueError, match="outside the training set"):
        main(["--model_name_or_path", str(saved_model), "--dataset_name", "digits",
              "--forget_index_file", str(index_file), "--output_dir", str(tmp_path / "run")])
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_help_lists_the_unlearning_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("--forget_class", "--forget_filter", "--gamma", "--compare_with_retrain", "--method",
                   "--pgu_delta", "--retrain_base_model"):
        assert option in text
    assert "--scrub_alpha SCRUB_ALPHA" not in text  # only the chosen method's hyperparameters
    # the unlearning options come before the hundred-odd TrainingArguments, and the method names are listed
    assert text.index("--method METHOD") < text.index("--save_strategy") and "--config CONFIG" in text
    assert text.index("unlearning (UnlearningArguments)") < text.index("training (TrainingArguments")
    assert "pgu_retain, eupmu" in " ".join(text.split())
    assert len(text[: text.index("model and data:")].splitlines()) < 15  # a short usage line, not 150


def test_help_shows_common_training_options_and_help_all_every_one(capsys, monkeypatch):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    short = capsys.readouterr().out
    assert "--save_total_limit" in short and "--adam_beta1" not in short and "more with --help_all" in short
    with pytest.raises(SystemExit):
        parse_args(["--help_all"])
    full = capsys.readouterr().out
    assert "--adam_beta1" in full and "--gradient_checkpointing" in full and len(full) > 1.5 * len(short)
    # an option left out of --help still parses
    _, _, args = parse_args(["--model_name_or_path", "m", "--dataset_name", "digits", "--forget_class", "3",
                             "--output_dir", "o", "--adam_beta1", "0.8"])
    assert args.adam_beta1 == 0.8
    # the usage line names how the run was started
    monkeypatch.setattr("sys.argv", ["recipes/unlearn.py"])
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    assert capsys.readouterr().out.startswith("usage: recipes/unlearn.py [--config FILE.yaml]")


def test_help_for_another_method_lists_its_hyperparameters(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--method", "scrub", "--help"])
    text = capsys.readouterr().out
    assert "--scrub_alpha" in text and "scrub hyperparameters" in text and "--pgu_delta PGU_DELTA" not in text


def test_config_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)  # anywhere but the repository
    script, forget, args = parse_args(["--config", str(root / "recipes/configs/digits_class.yaml")])
    assert script.model_name_or_path == str(root / "outputs/demo/original")
    assert args.output_dir == str(root / "outputs/recipes/digits-class3") and forget.forget_class == [3]
    config = tmp_path / "mine.yaml"
    config.write_text("model_name_or_path: some/hub-id\ndataset_name: digits\noutput_dir: ./out\n")
    script, _, args = parse_args(["--config", str(config)])
    assert script.model_name_or_path == "some/hub-id" and args.output_dir == str(tmp_path / "out")


def test_every_shipped_config_parses_and_the_text_one_points_into_the_repository(tmp_path, monkeypatch):
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    configs = sorted((root / "recipes" / "configs").glob("*.yaml"))
    assert len(configs) >= 3
    for config in configs:
        script, _, args = parse_args(["--config", str(config)])
        assert Path(args.output_dir).is_relative_to(root / "outputs"), config.name
    script, forget, args = parse_args(["--config", str(root / "recipes/configs/sms_spam_minilm.yaml")])
    assert script.data_files == [str(root / "outputs/sms_minilm/train.csv")]
    assert script.validation_file == str(root / "outputs/sms_minilm/validation.csv")
    assert script.retrain_base_model == str(root / "outputs/sms_minilm/base")
    assert forget.forget_filter == 'text contains "call"' and script.max_length == 48
    assert args.method == "auto"


def test_the_reference_is_cached_outside_the_output_folder_and_a_given_one_is_used(saved_model, tmp_path,
                                                                                   monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HF_UNLEARN_HOME", str(home))
    torch.set_num_threads(1)
    common = ["--model_name_or_path", str(saved_model), "--dataset_name", "digits", "--forget_class", "3",
              "--compare_with_retrain", "true", "--retrain_epochs", "2", "--mia_draws", "1",
              "--disable_tqdm", "true", "--logging_strategy", "no"]
    main([*common, "--output_dir", str(tmp_path / "first")])
    assert not list((tmp_path / "first").glob("retrain_cache*"))  # a second full model stays out of the folder
    [cached] = (home / "references").glob("retrain-*")
    first = json.loads((tmp_path / "first" / "report.json").read_text())
    assert first["results"]["retrain"]["time"] > 0 and "pgu_retain" in first["speedup"]

    main([*common, "--output_dir", str(tmp_path / "second"), "--reference_model", str(cached)])
    second = json.loads((tmp_path / "second" / "report.json").read_text())
    for key in ("UA", "RA", "TA"):  # the very model that was cached, evaluated on the same rows
        assert second["results"]["retrain"][key] == pytest.approx(first["results"]["retrain"][key])
    assert "time" not in second["results"]["retrain"] and not second["speedup"]  # its training time is unknown
    assert "given by --reference_model" in (tmp_path / "second" / "README.md").read_text()


def test_a_reference_model_needs_the_comparison_and_an_existing_folder(tmp_path):
    base = ["--model_name_or_path", "m", "--dataset_name", "digits", "--forget_class", "3", "--output_dir",
            str(tmp_path)]
    with pytest.raises(ValueError, match="add --compare_with_retrain true"):
        parse_args([*base, "--reference_model", str(tmp_path)])
    with pytest.raises(ValueError, match="no such folder"):
        parse_args([*base, "--compare_with_retrain", "true", "--reference_model", str(tmp_path / "missing")])


def test_a_class_removal_reports_test_accuracy_on_the_kept_classes(saved_model, tmp_path, monkeypatch):
    """The removed class's test rows are wrong by design (for the retrained model too): TA, its label in the report,
    the card and the card's metadata are the kept classes', computed here straight from the saved model."""
    import yaml
    from transformers import AutoModelForImageClassification

    from hf_unlearn.scripts.unlearn import load_model_and_data

    monkeypatch.setenv("HF_UNLEARN_HOME", str(tmp_path / "home"))
    torch.set_num_threads(1)
    out = tmp_path / "run"
    argv = ["--model_name_or_path", str(saved_model), "--dataset_name", "digits", "--forget_class", "3",
            "--compare_with_retrain", "true", "--retrain_epochs", "2", "--mia_draws", "1", "--output_dir", str(out),
            "--disable_tqdm", "true", "--logging_strategy", "no"]
    main(argv)
    report = json.loads((out / "report.json").read_text())
    assert report["ta_label"] == "TA (kept classes)"
    task = load_model_and_data(parse_args(argv)[0])
    test = task.data[task.eval_split][:]
    for name, folder in (("original", saved_model), ("pgu_retain", out)):
        model = AutoModelForImageClassification.from_pretrained(folder).eval()
        with torch.no_grad():
            correct = model(pixel_values=test["pixel_values"]).logits.argmax(-1) == test["labels"]
        kept = test["labels"] != 3
        row = report["results"][name]
        assert row["TA"] == pytest.approx(100.0 * correct[kept].float().mean().item(), abs=1e-9)
        assert row["TA_all_classes"] == pytest.approx(100.0 * correct.float().mean().item(), abs=1e-9)
    unlearned = report["results"]["pgu_retain"]
    assert unlearned["TA"] - unlearned["TA_all_classes"] > 5  # the class's share of the test set, not damage
    assert "TA (kept classes, %)" in (out / "report.md").read_text()
    card = (out / "README.md").read_text()
    assert "| model | UA | RA | TA (kept classes) | MIA | Avg. Gap |" in card
    assert "TA (kept classes) = test accuracy on the classes that were not removed" in card
    [entry] = yaml.safe_load(card.split("---")[1])["model-index"]
    metrics = {m["type"]: m for m in entry["results"][0]["metrics"]}
    assert "ta" not in metrics and metrics["ta_kept_classes"]["name"] == "Test accuracy on the kept classes"
    assert metrics["ta_kept_classes"]["value"] == pytest.approx(round(unlearned["TA"], 2))
