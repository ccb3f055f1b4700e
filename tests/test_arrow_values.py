"""Row digests, the filter in front of the exact forget/retain overlap check."""

from __future__ import annotations

import numpy as np
from datasets import Dataset

from hf_unlearn.data.arrow_values import row_digests


def test_equal_rows_share_a_digest_and_any_changed_value_changes_it():
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(6, 9)).astype(np.float32)
    variants = []
    for position in range(9):  # every word of the row counts: one changed value, one new digest
        changed = rows[0].copy()
        changed[position] += 0.5
        variants.append(changed)
    table = np.concatenate([rows, rows[[2, 4]], np.stack(variants)])
    labels = [0, 1, 2, 0, 1, 2, 2, 1] + [0] * 9
    data = Dataset.from_dict({"x": table.tolist(), "labels": labels}).with_format("torch")
    digests = row_digests(data.select(range(len(table))), ["x", "labels"])
    assert digests[6] == digests[2] and digests[7] == digests[4]  # the copies
    assert len(set(digests[:6].tolist()) | set(digests[8:].tolist())) == 6 + 9  # everything else differs
    relabeled = Dataset.from_dict({"x": table[:1].tolist(), "labels": [5]})
    assert row_digests(relabeled, ["x", "labels"])[0] != digests[0]  # the label is part of the row
    assert row_digests(Dataset.from_dict({"t": ["a"]}), ["t"]) is None  # not numeric: the exact check decides
