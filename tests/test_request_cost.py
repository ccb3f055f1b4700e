"""What a request's set-up reads: a forget/retain split of one table is checked from its indices, not its rows."""

import numpy as np
import pytest
from datasets import Dataset

import hf_unlearn.data.checks as checks
from hf_unlearn.data.checks import check_no_overlap, split_of_one_table
from hf_unlearn.data.columns import column_array
from hf_unlearn.data.forget import split_forget_retain


def _data(n=50):
    rng = np.random.default_rng(0)
    return Dataset.from_dict({"x": rng.normal(size=(n, 4)).astype(np.float32).tolist(),
                              "labels": rng.integers(0, 3, n).tolist()}).with_format("torch")


def test_a_split_of_one_table_is_checked_without_reading_its_rows(monkeypatch):
    data = _data()
    forget, retain = split_forget_retain(data, [3, 7, 11])
    assert split_of_one_table(forget, retain)

    def no_reading(*args, **kwargs):
        raise AssertionError("the rows were read")

    monkeypatch.setattr(checks, "row_digests", no_reading)
    monkeypatch.setattr(checks, "fingerprint_examples", no_reading)
    check_no_overlap(forget, retain, ["x", "labels"], lambda: None, training_rows=len(data))
    with pytest.raises(AssertionError, match="the rows were read"):  # the table is not (all of) the training data
        check_no_overlap(forget, retain, ["x", "labels"], lambda: None, training_rows=len(data) - 5)


def test_a_contiguous_forget_set_is_a_slice_and_still_recognised():
    """``select`` of a contiguous range is a zero-copy slice with no index list (a class of sorted data)."""
    data = _data()
    forget, retain = split_forget_retain(data, list(range(10, 20)))
    assert forget._indices is None and retain._indices is not None
    assert split_of_one_table(forget, retain)
    assert not split_of_one_table(data.select(range(10, 20)), data.select([i for i in range(50) if i != 15]))
    assert not split_of_one_table(data.select(range(10, 20)), data.select([i for i in range(50) if i < 10]))


def test_selections_that_overlap_or_leave_rows_out_are_still_checked_row_by_row():
    data = _data()
    forget = data.select([3, 7, 11])
    overlapping = data.select([i for i in range(len(data)) if i != 7])  # still holds rows 3 and 11
    partial = data.select(range(20, 50))
    other_table = _data().select([i for i in range(50) if i not in (3, 7, 11)])  # same values, another table
    assert not split_of_one_table(forget, overlapping)
    assert not split_of_one_table(forget, partial)
    assert not split_of_one_table(forget, other_table)
    training = lambda: checks.fingerprint_examples(data, ["x", "labels"])  # noqa: E731
    with pytest.raises(ValueError, match="also in the retain set"):
        check_no_overlap(forget, overlapping, ["x", "labels"], training)


@pytest.mark.parametrize("rows", [None, [5, 1, 30, 2], "shuffle"])
def test_a_label_column_read_from_the_buffer_equals_the_formatters(rows):
    data = _data()
    data = data.shuffle(seed=3) if rows == "shuffle" else data.select(rows) if rows else data
    expected = np.asarray(data.select_columns(["labels"]).with_format("numpy")[:]["labels"])
    got = column_array(data, "labels")
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
    names = Dataset.from_dict({"labels": ["a", "b", "a"]})  # not numeric: the formatter's read
    assert column_array(names, "labels").tolist() == ["a", "b", "a"]
