"""Input checks that run before any weight moves: each failure says what is wrong and how to fix it.

Careless inputs used to fail deep inside a model (raw text reaching BERT), pass silently (NaN
pixels training to NaN weights, an eval set whose labels the model cannot predict), or corrupt
the record (a retain set that still holds the forget rows). These checks read each set once.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable

import numpy as np
import torch

from ..core.fingerprint import LOCAL_KEY, fingerprint_examples, label_aliases
from ..core.labels import LABEL_KEYS
from .arrow_values import column_values, row_digests

_CHUNK = 1024
logger = logging.getLogger(__name__)


def require_dataset(name: str, dataset) -> None:
    """A ``datasets.Dataset`` (columns, ``select``): lists and torch datasets get a recipe to convert."""
    if dataset is None:
        return
    if not (hasattr(dataset, "column_names") and hasattr(dataset, "select")):
        raise TypeError(
            f"{name} must be a datasets.Dataset, got {type(dataset).__name__}. Convert it first, e.g. "
            "datasets.Dataset.from_list(rows) for a list of dicts, or Dataset.from_dict({'pixel_values': x, "
            "'labels': y}) for tensors."
        )


def require_model_inputs(name: str, dataset, raw_columns: list[str]) -> None:
    """After pruning to what ``model.forward`` accepts, something besides the labels must be left."""
    if dataset is None:
        return
    if not [c for c in dataset.column_names if c not in LABEL_KEYS]:
        hint = (
            f" Its columns {raw_columns} look like raw data: tokenise text (dataset.map(lambda b: tokenizer(b['text'], "
            "truncation=True), batched=True)) or process images into pixel_values first."
        )
        raise ValueError(f"The {name} set has no column the model takes as input.{hint}")


def require_finite(name: str, dataset) -> None:
    """Refuse NaN or infinite values in floating-point input columns (they train to NaN weights)."""
    if dataset is None or len(dataset) == 0:
        return
    suspect = []
    for column in dataset.column_names:  # read from Arrow at once; a superset of rows for ragged columns
        found = column_values(dataset, column)
        if found is not None and found[0].dtype.kind == "f" and not np.isfinite(found[0]).all():
            suspect.append(column)
    if not suspect:
        return
    view = dataset.select_columns(suspect).with_format("numpy")  # the slow path, only to say where
    for start in range(0, len(dataset), _CHUNK):
        for column, values in view[start : start + _CHUNK].items():
            array = _as_array(values)
            if array is not None and array.dtype.kind == "f" and not np.isfinite(array).all():
                bad = int((~np.isfinite(array)).reshape(len(array), -1).any(axis=1).sum())
                raise ValueError(
                    f"The {name} set has NaN or infinite values in column {column!r} ({bad} row(s) from row "
                    f"{start}). Clean or drop those rows: a non-finite input makes non-finite weights."
                )


def _as_array(values) -> np.ndarray | None:
    if torch.is_tensor(values):
        return values.numpy()
    if isinstance(values, np.ndarray):
        if values.dtype == object:
            try:
                return np.stack([np.asarray(v) for v in values]) if len(values) else None
            except ValueError:  # ragged rows (token ids): not floating point anyway
                return None
        return values
    return None


def check_no_overlap(
    forget,
    retain,
    columns: list[str],
    training: Callable[[], torch.Tensor] | None,
    key: bytes | str | None = LOCAL_KEY,
    training_rows: int | None = None,
) -> None:
    """Forget rows must not also be kept: a row may be in both only as often as the training data has it.

    ``training`` returns the training set's fingerprints on ``columns`` (from ``original_dataset`` or the
    space; called only when some row has a twin) and so each row's multiplicity: the check is exact.
    Without it, duplicates in the data (SMS spam has many) cannot be told from a retain set that still
    holds the forget set: half or more of the forget rows shared is refused, fewer is a warning.
    ``training_rows``: how many rows the training data holds now; a forget and a retain set that split one table
    of exactly that many rows between them pass without their rows being read.
    """
    if retain is None or len(retain) == 0:
        return
    if training is not None and len(forget) + len(retain) == training_rows and split_of_one_table(forget, retain):
        # every row is in one set or the other, once: a content in both is a copy the training data itself holds,
        # which is what the check below allows (with the training data known it would find nothing, at O(N))
        return
    in_forget, in_retain = label_aliases(columns, forget.column_names), label_aliases(columns, retain.column_names)
    usable = [c for c in columns if in_forget[c] in forget.column_names and in_retain[c] in retain.column_names]
    if not usable:
        return
    if usable != list(columns):
        training = None  # fingerprints on fewer columns cannot be looked up in the training data's
    requested = len(forget)
    forget_digests = row_digests(forget, [in_forget[c] for c in usable])  # the same columns, in the same order
    retain_digests = row_digests(retain, [in_retain[c] for c in usable])
    if forget_digests is not None and retain_digests is not None:  # only rows with a twin need fingerprints
        candidates = np.intersect1d(forget_digests, retain_digests)
        if not len(candidates):
            return
        forget = forget.select(np.flatnonzero(np.isin(forget_digests, candidates)).tolist())
        retain = retain.select(np.flatnonzero(np.isin(retain_digests, candidates)).tolist())
    forget_counts = Counter(fingerprint_examples(forget, usable, key).tolist())
    retain_counts = Counter(fingerprint_examples(retain, usable, key).tolist())
    have = Counter(training().tolist()) if training is not None else None
    shared = [fp for fp in forget_counts if fp in retain_counts]
    if have is not None:
        shared = [fp for fp in shared if forget_counts[fp] + retain_counts[fp] > have.get(fp, 0)]
    rows = sum(forget_counts[fp] for fp in shared)
    fix = (
        "The retain set must be the training data without the forget set: build both with "
        "hf_unlearn.data.forget.split_forget_retain."
    )
    if have is not None and rows:
        raise ValueError(
            f"{rows} forget example(s) are also in the retain set more often than the training data holds them. {fix}"
        )
    if have is None and rows * 2 >= requested:
        raise ValueError(f"{rows} of {requested} forget examples are also in the retain set. {fix}")
    if rows:  # without the training data's multiplicities a few shared rows are most likely duplicates in the data
        logger.warning(
            "%d forget example(s) have an identical copy in the retain set (duplicates in the data?): the kept copy "
            "still teaches the model what the forgotten one did. Pass original_dataset to check exactly.",
            rows,
        )


def split_of_one_table(first, second) -> bool:
    """Whether two selections of the same Arrow table (the same memory) are disjoint and together cover it, as
    ``split_forget_retain`` makes them (an index list, or a zero-copy slice for a contiguous range). Reads only
    the index lists and where each column's chunks lie, never the rows."""
    parent = next((d for d in (first, second) if getattr(d, "_indices", None) is not None), None)
    if parent is None or any(getattr(getattr(d, "data", None), "table", None) is None for d in (first, second)):
        return False
    table = parent.data.table
    keys: dict[tuple, int] = {}  # chunk buffers -> a number, shared by every table read here
    every = _row_ids(table, keys)  # per column: where each of the table's rows lies
    lookup = {int(v): i for i, v in enumerate(every[0])}
    positions = []
    for dataset in (first, second):
        indices = getattr(dataset, "_indices", None)
        if indices is not None:
            if dataset is not parent and _buffers(dataset.data.table) != _buffers(table):
                return False
            positions.append(indices.column(0).to_numpy())
            continue
        ids = _row_ids(dataset.data.table, keys)  # a slice: the same memory at other offsets
        if len(ids) != len(every) or any(int(v) not in lookup for v in ids[0]):
            return False
        rows = np.array([lookup[int(v)] for v in ids[0]], dtype=np.int64)
        if any(not np.array_equal(column, full[rows]) for column, full in zip(ids, every)):
            return False
        positions.append(rows)
    if sum(len(p) for p in positions) != table.num_rows:
        return False
    seen = np.zeros(table.num_rows, dtype=np.int64)
    for rows in positions:
        np.add.at(seen, rows, 1)
    return bool((seen == 1).all())


def _buffers(table) -> list:
    """Where each column chunk's data lives: equal lists mean one table in memory."""
    return [tuple(b.address if b is not None else None for b in chunk.buffers())
            for column in table.columns for chunk in column.chunks]


def _row_ids(table, keys: dict[tuple, int]) -> list[np.ndarray]:
    """Per column, an id of the memory each row lies in: (which chunk buffers, the row's offset in them)."""
    out = []
    for column in table.columns:
        parts = []
        for chunk in column.chunks:
            buffers = tuple(b.address if b is not None else None for b in chunk.buffers())
            key = keys.setdefault(buffers, len(keys))
            parts.append(np.int64(key) * (1 << 40) + chunk.offset + np.arange(len(chunk), dtype=np.int64))
        out.append(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64))
    return out


def check_not_everything(forget, original_dataset, space) -> None:
    """Forgetting every training example leaves nothing to keep: that is retraining from scratch."""
    total = len(original_dataset) if original_dataset is not None else getattr(space, "num_examples", None)
    if total is not None and len(forget) >= total:
        raise ValueError(
            f"The forget set ({len(forget)} examples) is the whole training set ({total}): nothing would be kept. "
            "Train a new model instead (hf_unlearn.exact.retrain_from_scratch needs a non-empty retain set too)."
        )


def check_request_inputs(*, forget, retain, eval_dataset, original_dataset, space) -> None:
    """Every check on the raw sets that needs no model: types, size of the request, overlap."""
    for name, dataset in (("forget_dataset", forget), ("retain_dataset", retain), ("eval_dataset", eval_dataset),
                          ("original_dataset", original_dataset)):
        require_dataset(name, dataset)
    if forget is None or len(forget) == 0:
        raise ValueError("The forget set is empty: there is nothing to unlearn.")
    check_not_everything(forget, original_dataset, space)
    key = LOCAL_KEY
    if space is not None and getattr(space, "fingerprint_columns", None):
        columns, key = list(space.fingerprint_columns), space.fingerprint_key()
        training = (lambda: space.train_fingerprints) if space.train_fingerprints is not None else None
    elif original_dataset is not None:
        columns = list(original_dataset.column_names)
        training = lambda: fingerprint_examples(original_dataset, columns)  # noqa: E731  (a pass over all rows)
    else:
        columns, training = list(forget.column_names), None
    check_no_overlap(forget, retain, columns, training, key, training_rows=_training_rows(original_dataset, space))


def _training_rows(original_dataset, space) -> int | None:
    """How many rows the training data holds now (a space's count drops with each request it carried out)."""
    if space is not None and getattr(space, "train_fingerprints", None) is not None:
        return int(space.num_examples)
    return len(original_dataset) if original_dataset is not None else None


def check_model_inputs(**datasets) -> None:
    """On the sets pruned to the model's inputs: something to feed the model, and finite values."""
    for name, (pruned, raw_columns) in datasets.items():
        require_model_inputs(name, pruned, raw_columns)
        require_finite(name, pruned)
