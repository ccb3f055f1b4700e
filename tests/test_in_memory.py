"""Datasets read into memory once: the Arrow path gives exactly what the torch formatter gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from datasets import Array3D, Dataset, Features, Sequence, Value

from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.data.memory import InMemoryDataset, _columns_from_arrow, materialize


def _same_as_formatter(dataset) -> None:
    expected = dataset.with_format("torch")[:]
    held = materialize(dataset)
    assert isinstance(held, InMemoryDataset)
    assert set(held.columns) == set(expected)
    for name, values in expected.items():
        assert held.columns[name].dtype == values.dtype, name
        assert held.columns[name].shape == values.shape, name
        assert torch.equal(held.columns[name], values), name


def test_images_and_labels_of_a_shuffled_selection_match_the_formatter():
    train = load_digits_dataset()["train"]
    assert isinstance(train.features["pixel_values"], Array3D)
    picked = train.shuffle(seed=3).select(range(len(train) // 2))  # an indices mapping over the table
    assert _columns_from_arrow(picked) is not None  # the fast path is the one under test
    _same_as_formatter(picked)
    _same_as_formatter(train)


def test_float64_lists_and_padded_ids_are_cast_like_the_formatter():
    rng = np.random.default_rng(0)
    features = Features(
        {"x": Sequence(Value("float64"), length=5), "input_ids": Sequence(Value("int32")), "labels": Value("int8")}
    )
    data = Dataset.from_dict(
        {"x": rng.normal(size=(40, 5)).tolist(), "input_ids": rng.integers(0, 99, (40, 7)).tolist(),
         "labels": rng.integers(0, 3, 40).tolist()},
        features=features,
    )
    assert _columns_from_arrow(data) is not None
    _same_as_formatter(data.select([5, 1, 30, 2, 9, 11, 12, 13, 14, 15, 16]))
    held = materialize(data)
    assert held.columns["x"].dtype == torch.float32 and held.columns["labels"].dtype == torch.int64


@pytest.mark.parametrize("case", ["ragged", "text", "null"])
def test_columns_the_arrow_path_cannot_read_fall_back(case):
    if case == "ragged":  # unpadded token ids: left to the collator, the dataset comes back as it was
        data = Dataset.from_dict({"input_ids": [[1, 2], [3, 4, 5]], "labels": [0, 1]})
        assert _columns_from_arrow(data) is None and materialize(data) is data
        return
    if case == "text":
        data = Dataset.from_dict({"text": ["a", "b"], "labels": [0, 1]})
        assert _columns_from_arrow(data) is None and materialize(data) is data
        return
    data = Dataset.from_dict({"x": [1.0, None, 3.0], "labels": [0, 1, 1]})
    assert _columns_from_arrow(data) is None  # a null would read as a number: the formatter decides
    expected = data.with_format("torch")[:]
    held = materialize(data)
    assert torch.equal(held.columns["labels"], expected["labels"])
    assert torch.equal(torch.isnan(held.columns["x"]), torch.isnan(expected["x"]))
