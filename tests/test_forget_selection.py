"""Forget-set selection: index files, classes, random fractions, column filters, and their errors."""

import json

import pytest
from datasets import Dataset

from hf_unlearn.data.forget import (
    indices_from_file,
    indices_from_filter,
    indices_of_classes,
    random_indices,
    split_forget_retain,
)


@pytest.fixture
def table():
    return Dataset.from_dict({"user_id": [7, 8, 7, 9, 10], "labels": [0, 1, 1, 2, 0], "text": list("abcde")})


def test_index_files_in_both_formats(tmp_path):
    lines, as_json = tmp_path / "a.txt", tmp_path / "b.json"
    lines.write_text("3\n1\n3\n")
    as_json.write_text(json.dumps([4, 0]))
    assert indices_from_file(lines, 5) == [1, 3]
    assert indices_from_file(as_json, 5) == [0, 4]
    with pytest.raises(ValueError, match="outside the training set"):
        indices_from_file(lines, 3)


def test_classes_fraction_and_filters(table):
    assert indices_of_classes(table, [0]) == [0, 4]
    with pytest.raises(ValueError, match="do not occur"):
        indices_of_classes(table, [5])
    picked = random_indices(1000, 0.1, seed=3)
    assert len(picked) == 100 == len(set(picked)) and picked == random_indices(1000, 0.1, seed=3)
    assert indices_from_filter(table, "user_id==7") == [0, 2]
    assert indices_from_filter(table, "user_id >= 9") == [3, 4]
    assert indices_from_filter(table, "user_id in [8, 10]") == [1, 4]
    assert indices_from_filter(table, "text == 'c'") == [2]
    with pytest.raises(ValueError, match="not in the dataset"):
        indices_from_filter(table, "age==3")
    with pytest.raises(ValueError, match="Cannot parse"):
        indices_from_filter(table, "user_id ~ 3")


def test_forget_and_retain_are_complements(table):
    forget, retain = split_forget_retain(table, [3, 1])
    assert forget["text"][:] == ["b", "d"] and retain["text"][:] == ["a", "c", "e"]


def test_text_filters_contains_and_matches_and_type_errors():
    from datasets import Dataset

    from hf_unlearn.data.forget import indices_from_filter

    data = Dataset.from_dict({"text": ["call 555-0199 now", "hello", "my number: 555-0199", "555 0199"],
                              "user": [1, 2, 3, 4]})
    assert indices_from_filter(data, 'text contains "555-0199"') == [0, 2]
    assert indices_from_filter(data, r'text matches "\d{3}[- ]\d{4}"') == [0, 2, 3]
    assert indices_from_filter(data, "user >= 3") == [2, 3]
    with pytest.raises(ValueError, match="compare numbers with numbers"):
        indices_from_filter(data, "text > 3")
    with pytest.raises(ValueError, match="'contains' needs a text column"):
        indices_from_filter(data, "user contains 3")
    with pytest.raises(ValueError, match="Invalid regular expression"):
        indices_from_filter(data, 'text matches "(unclosed"')
    # regex escapes are taken literally (JSON would read \b as a backspace and match nothing)
    words = Dataset.from_dict({"text": ["Call me", "recall it", "a call now", "CALL"]})
    assert indices_from_filter(words, r'text matches "(?i)\bcall\b"') == [0, 2, 3]
    assert indices_from_filter(words, r"text matches '\bcall'") == [2]
    assert indices_from_filter(words, "text contains call") == [1, 2]


def test_no_validation_is_carved_unless_asked_and_file_rows_keep_their_numbers():
    from datasets import Dataset, DatasetDict

    from hf_unlearn.data.loading import ensure_splits, file_rows_to_train_rows

    data = DatasetDict(train=Dataset.from_dict({"x": list(range(50)), "labels": [0] * 50}))
    same, kept = ensure_splits(data, None, seed=0)
    assert list(same) == ["train"] and kept is None  # nothing carved silently
    carved, kept = ensure_splits(data, None, seed=0, validation_percentage=10)
    assert len(carved["validation"]) == 5 and carved["train"]["x"] == kept  # train keeps file order
    rows = [r for r in range(50) if r in kept][:3]
    train_rows = file_rows_to_train_rows(rows, kept)
    assert [carved["train"][i]["x"] for i in train_rows] == rows  # row numbers of the user's file
    held_out = next(r for r in range(50) if r not in kept)
    with pytest.raises(ValueError, match="carved into the validation split"):
        file_rows_to_train_rows([held_out], kept)


def test_the_command_lines_embedded_split_is_the_one_its_log_line_names(caplog):
    """Train on ``load_digits_dataset(test_size=0.2, validation_size=0.1, seed=s)`` and the recipe's
    ``--dataset_name digits`` reads the same rows: its validation rows were never trained on."""
    import logging

    import numpy as np

    from hf_unlearn.data.builtin import load_digits_dataset
    from hf_unlearn.data.loading import load_raw

    with caplog.at_level(logging.INFO, logger="hf_unlearn.data.loading"):
        cli = load_raw("digits", seed=3)
    named = load_digits_dataset(test_size=0.2, validation_size=0.1, seed=3)
    for split in ("train", "validation", "test"):
        assert np.array_equal(np.asarray(cli[split]["pixel_values"]), np.asarray(named[split]["pixel_values"]))
    assert "load_digits_dataset(test_size=0.2, validation_size=0.1, seed=3)" in caplog.text
    assert f"{len(named['validation'])} validation" in caplog.text
    default = load_digits_dataset(seed=3)  # the function's own default keeps no validation rows
    assert "validation" not in default and len(default["train"]) > len(cli["train"])
