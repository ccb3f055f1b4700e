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
