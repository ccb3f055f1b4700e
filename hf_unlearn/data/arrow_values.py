"""Whole columns as NumPy arrays straight from Arrow, for checks that must not cost a training step.

``datasets``' NumPy formatter builds nested arrays row by row, and gathering the rows of a ``select``ed
dataset makes one Arrow chunk per row: reading 1 100 small images either way took longer than
unlearning them. Here a column's flat values buffer is read once from the underlying table, and the
selected rows are picked with NumPy indexing.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_LISTS = (pa.types.is_list, pa.types.is_large_list, pa.types.is_fixed_size_list)


def _flatten(column: pa.ChunkedArray) -> tuple[np.ndarray, int | None] | None:
    """All values of a numeric column, and how many each row has (None when rows differ)."""
    chunks, per_row = [], set()
    for chunk in column.chunks:
        array = chunk.storage if isinstance(chunk, pa.ExtensionArray) else chunk
        rows = len(array)
        while any(check(array.type) for check in _LISTS):
            array = array.flatten()
        if not (pa.types.is_floating(array.type) or pa.types.is_integer(array.type) or pa.types.is_boolean(array.type)):
            return None
        if rows:
            per_row.add(len(array) // rows if len(array) % rows == 0 else None)
        chunks.append(array.to_numpy(zero_copy_only=False))
    values = np.concatenate(chunks) if chunks else np.zeros(0)
    return values, (per_row.pop() if len(per_row) == 1 else None)


def column_values(dataset, column: str) -> tuple[np.ndarray, bool] | None:
    """A numeric column's values, as ``(rows × values per row, True)`` for fixed-size rows of the dataset's
    own selection, or ``(flat values of the underlying table, False)`` for ragged rows (a superset when
    the dataset is a ``select``ion). None for non-numeric columns."""
    table = dataset.data.table
    found = _flatten(table.column(column))
    if found is None:
        return None
    values, per_row = found
    if per_row is None or per_row * table.num_rows != len(values):
        return values, False
    matrix = values.reshape(table.num_rows, per_row)
    indices = getattr(dataset, "_indices", None)
    if indices is not None:
        matrix = matrix[indices.column(0).to_numpy()]
    return matrix, True


def row_digests(dataset, columns: list[str]) -> np.ndarray | None:
    """An exact-content digest per row (uint64, wrapping arithmetic), or None for ragged or non-numeric data.

    Identical rows always get identical digests; different rows almost never do. Used as a filter in
    front of the slower per-row fingerprints, which still decide.
    """
    digest = np.zeros(len(dataset), dtype=np.uint64)
    for number, column in enumerate(columns):
        found = column_values(dataset, column)
        if found is None or not found[1]:
            return None
        values = found[0].astype(np.float32 if found[0].dtype.kind == "f" else np.int64)
        # whole words, not bytes: 4x fewer products (3 150 MNIST images: 0.059 -> 0.015 s, best of 5)
        word = np.uint32 if values.dtype == np.float32 else np.uint64
        data = np.ascontiguousarray(values).view(word).reshape(len(dataset), -1).astype(np.uint64)
        powers = np.random.default_rng(number).integers(1, 2**63, size=data.shape[1], dtype=np.uint64) | np.uint64(1)
        with np.errstate(over="ignore"):
            digest = digest * np.uint64(1_000_003) + (data * powers).sum(axis=1, dtype=np.uint64)
    return digest
