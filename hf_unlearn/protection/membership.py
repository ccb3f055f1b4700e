"""Which examples a request names, and whether the model was trained on them.

Examples are identified by fingerprints of their column values (``core.fingerprint_examples``), so
a request can be checked against the training set, or against a cached space's ledger, without the
model.
"""

from __future__ import annotations

import logging

import torch

from ..core import fingerprint_examples
from ..core.fingerprint import LOCAL_KEY, label_aliases

logger = logging.getLogger(__name__)


def forget_fingerprints(
    forget_dataset, columns: list[str], source: str, key: bytes | str | None = LOCAL_KEY
) -> torch.Tensor:
    """Fingerprints of the forget examples on the columns ``source`` identifies examples by."""
    available = forget_dataset.column_names
    read = label_aliases(columns, available)
    missing = [c for c in columns if read[c] not in available]
    if missing:
        raise ValueError(
            f"{source} identifies examples by columns {columns}; the forget set lacks {missing}. "
            "Select the forget set from the same dataset."
        )
    return fingerprint_examples(forget_dataset.select_columns(sorted(set(read.values()))), columns, key)


def check_membership(original_fingerprints: torch.Tensor, forget_dataset, columns: list[str]) -> None:
    """Refuse a request naming examples that are not in the training set."""
    known = set(original_fingerprints.tolist())
    forget = forget_fingerprints(forget_dataset, columns, "original_dataset").tolist()
    unknown = sum(fp not in known for fp in forget)
    if unknown:
        raise ValueError(
            f"{unknown} of {len(forget)} forget examples are not in original_dataset: "
            "only examples the model was trained on can be forgotten."
        )


def check_unprojected_request(forget_dataset, *, space=None, original_dataset=None, method: str = "") -> None:
    """The request checks of a method that does not maintain a Core Gradient Space: a given ``space``'s ledger
    still refuses repeated and unknown examples (and the run says the unlearned model is saved without the
    space), and ``original_dataset`` proves the forget examples were trained on."""
    if space is not None:
        columns = space.fingerprint_columns or list(forget_dataset.column_names)
        space.check_request(forget_fingerprints(forget_dataset, columns, "The cache", space.fingerprint_key()))
        logger.warning(
            "%s does not maintain the Core Gradient Space: the unlearned model is saved without one (its ledger of "
            "%d earlier request(s) stays with the input model).", method, len(space.ledger),
        )
    if original_dataset is not None:
        columns = list(original_dataset.column_names)
        check_membership(fingerprint_examples(original_dataset, columns), forget_dataset, columns)
