"""A known user error ends a command-line run with one line and exit status 2; anything else keeps its traceback."""

import json

import pytest

from hf_unlearn import cli
from hf_unlearn.scripts import unlearn


def test_a_refused_flag_is_one_line_and_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["unlearn", "--model_name_or_path", "m", "--dataset_name", "digits", "--forget_class", "3",
                  "--output_dir", str(tmp_path), "--reference_model", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --reference_model") and len(err.splitlines()) == 1 and "Traceback" not in err


def test_an_existing_space_is_refused_before_the_model_loads(tmp_path, capsys):
    space = tmp_path / "space"
    space.mkdir()
    (space / "cgs_config.json").write_text(json.dumps({}))
    with pytest.raises(SystemExit) as exit_info:  # the model does not exist: loading it first would fail otherwise
        cli.main(["cgs", "build", "--model_name_or_path", str(tmp_path / "no-model"), "--dataset_name", "digits",
                  "--output", str(space)])
    assert exit_info.value.code == 2 and "already holds a Core Gradient Space" in capsys.readouterr().err


def test_an_error_raised_outside_the_library_keeps_its_traceback(monkeypatch):
    def broken(argv):
        raise ValueError("not one of ours")

    monkeypatch.setattr(unlearn, "main", broken)
    with pytest.raises(ValueError, match="not one of ours"):
        cli.main(["unlearn"])


def test_the_traceback_can_be_asked_for(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_UNLEARN_TRACEBACK", "1")
    with pytest.raises(ValueError, match="add --compare_with_retrain true"):
        cli.main(["unlearn", "--model_name_or_path", "m", "--dataset_name", "digits", "--forget_class", "3",
                  "--output_dir", str(tmp_path), "--reference_model", str(tmp_path)])


def test_an_unknown_flag_is_one_line_naming_the_closest_options(tmp_path, capsys):
    # transformers raises this one itself, from outside the library: it must still end in one line
    for command in (["unlearn", "--model_name_or_path", "m", "--dataset_name", "digits", "--test_file", "t.csv"],
                    ["cgs", "build", "--model_name_or_path", "m", "--dataset_name", "digits", "--max_lenght", "64"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(command)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "Traceback" not in err
        assert err.startswith(f"error: unknown option {command[-2]}") and "--help lists every option" in err
    assert "did you mean --max_length?" in err
