"""Choosing the forget set: row indices from a file, whole classes, a random fraction, or a filter.

All four return row indices into the training set, so the forget and retain sets are always
exact complements of each other and of the data the cache was built from.
"""

from __future__ import annotations

import json
import operator
import re
from pathlib import Path

import numpy as np

from .columns import column_array, label_array

_OPS = {"==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
_FILTER = re.compile(r"^\s*(\w+)\s*(==|!=|<=|>=|<|>| in | contains | matches )\s*(.+?)\s*$")


def indices_from_file(path: str | Path, num_rows: int) -> list[int]:
    text = Path(path).read_text().strip()
    try:
        values = json.loads(text) if text.startswith("[") else [json.loads(token) for token in text.split()]
    except json.JSONDecodeError as error:
        raise ValueError(
            f"Cannot read forget indices from {path}: {error}. Expected one integer per line or a JSON list."
        ) from error
    bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int)]
    if bad:
        raise ValueError(
            f"{len(bad)} entries of {path} are not integer row numbers (e.g. {bad[:3]}): floats and booleans are "
            "refused rather than truncated."
        )
    indices = sorted(set(values))
    bad = [i for i in indices if not 0 <= i < num_rows]
    if bad:
        raise ValueError(
            f"{len(bad)} forget indices in {path} lie outside the training set of {num_rows} rows (e.g. {bad[:5]})."
        )
    return indices


def indices_of_classes(dataset, classes: list[int]) -> list[int]:
    labels = label_array(dataset)
    present = set(np.unique(labels).tolist())
    missing = [c for c in classes if c not in present]
    if missing:
        raise ValueError(f"Classes {missing} do not occur in the training set (labels present: {sorted(present)}).")
    return np.flatnonzero(np.isin(labels, classes)).tolist()


def random_indices(num_rows: int, fraction: float, seed: int) -> list[int]:
    count = max(1, int(round(fraction * num_rows)))
    return sorted(np.random.default_rng(seed).choice(num_rows, size=count, replace=False).tolist())


def _parse_value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text.strip("'\"")


def _label_ids(value, label_names: dict[str, int]):
    """A filter value on the label column, names ("spam") as the ids the column now holds."""
    if isinstance(value, list):
        return [_label_ids(v, label_names) for v in value]
    if isinstance(value, str):
        if value not in label_names:
            raise ValueError(f"The forget filter names label {value!r}; the labels are {sorted(label_names)}.")
        return label_names[value]
    return value


def indices_from_filter(
    dataset, expression: str, label_names: dict[str, int] | None = None, label_column: str | None = None
) -> list[int]:
    """``COLUMN OP VALUE``: OP in ==, !=, <, <=, >, >=; ``COLUMN in [v1, v2]``; on text columns
    ``COLUMN contains "text"`` (case-sensitive substring) and ``COLUMN matches "regex"`` (``re.search``).

    ``label_column``: the user's name for the label column, which the recipe renamed to ``labels``;
    ``label_names``: name -> id when the files named their labels, so ``label==spam`` still means spam."""
    match = _FILTER.match(expression)
    if not match:
        raise ValueError(
            f"Cannot parse forget filter {expression!r}; expected e.g. 'user_id==17', 'source in [1,2]', "
            "'text contains \"555-0199\"' or 'text matches \"\\d{3}-\\d{4}\"'."
        )
    column, op, raw = match.group(1), match.group(2).strip(), match.group(3)
    if column == label_column and column not in dataset.column_names and "labels" in dataset.column_names:
        column = "labels"
    if column not in dataset.column_names:
        raise ValueError(f"Forget filter column {column!r} is not in the dataset (columns: {dataset.column_names}).")
    # text patterns are taken literally between their quotes: JSON parsing would turn a regex's \b into a backspace
    text_pattern = op in ("contains", "matches")
    quoted = len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\""
    value = (raw[1:-1] if quoted else raw) if text_pattern else _parse_value(raw)
    if column == "labels" and label_names and not text_pattern:
        value = _label_ids(value, label_names)
    values = column_array(dataset, column).tolist()
    if op in ("contains", "matches"):
        if values and not isinstance(values[0], str):
            raise ValueError(f"'{op}' needs a text column; {column!r} holds {type(values[0]).__name__} values.")
        if op == "contains":
            return [i for i, v in enumerate(values) if str(value) in v]
        try:
            pattern = re.compile(str(value))
        except re.error as error:
            raise ValueError(f"Invalid regular expression {value!r} in the forget filter: {error}") from error
        return [i for i, v in enumerate(values) if pattern.search(v)]
    if op == "in":
        wanted = set(value if isinstance(value, list) else [value])
        return [i for i, v in enumerate(values) if v in wanted]
    if op in ("<", "<=", ">", ">=") and values and isinstance(values[0], str) != isinstance(value, str):
        raise ValueError(
            f"Cannot compare column {column!r} ({type(values[0]).__name__} values) with {value!r} using '{op}': "
            "compare numbers with numbers, or use 'contains' / 'matches' for text."
        )
    return [i for i, v in enumerate(values) if _OPS[op](v, value)]


def select_forget_indices(
    dataset,
    *,
    index_file: str | None = None,
    classes: list[int] | None = None,
    fraction: float | None = None,
    seed: int = 0,
    filter_expression: str | None = None,
    label_names: dict[str, int] | None = None,
    label_column: str | None = None,
) -> list[int]:
    """Row indices of the forget set described one way only (a file, classes, a fraction or a filter)."""
    chosen = [n for n, v in (("index_file", index_file), ("classes", classes), ("fraction", fraction),
                             ("filter", filter_expression)) if v]
    if len(chosen) > 1:
        raise ValueError(f"Choose the forget set one way only; got {chosen}.")
    if index_file:
        indices = indices_from_file(index_file, len(dataset))
    elif classes:
        indices = indices_of_classes(dataset, list(classes))
    elif fraction:
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"The forget fraction must lie in (0, 1), got {fraction}")
        indices = random_indices(len(dataset), fraction, seed)
    elif filter_expression:
        indices = indices_from_filter(dataset, filter_expression, label_names, label_column)
    else:
        raise ValueError(
            "No forget set given: set one of forget_index_file, forget_class, forget_fraction or forget_filter."
        )
    if not indices:
        raise ValueError("The forget set selected is empty: nothing in the training set matches it.")
    if len(indices) == len(dataset):
        raise ValueError("The forget set is the whole training set: retrain from scratch (there is nothing to keep).")
    return indices


def split_forget_retain(dataset, indices: list[int]):
    """``(forget, retain)`` as complementary selections of ``dataset``."""
    chosen = set(indices)
    retain = [i for i in range(len(dataset)) if i not in chosen]
    return dataset.select(sorted(chosen)), dataset.select(retain)
