"""A model that carries a ledger carries it into every space built for it.

An unlearned model's folder holds its space (``core_gradient_space/``) whose ledger lists the rows already
forgotten. A new space built from the training set would otherwise contain those rows again, with an empty
ledger: the same request could then be served twice, and the record of it would be gone. So a build for
such a model leaves the forgotten rows out (they are found by their fingerprints) and copies the ledger;
when it cannot tell which rows were forgotten, it is refused with the reason.
"""

from __future__ import annotations

import copy
import os
from collections import Counter

import torch

from .errors import LedgerError
from .fingerprint import fingerprint_examples

SAVED_SPACE_DIR = "core_gradient_space"  # where a model folder keeps its space


def model_folder(model) -> str | None:
    """The local folder ``model`` was loaded from, if any."""
    config = getattr(model, "config", None)
    folder = getattr(config, "_name_or_path", None) or getattr(model, "name_or_path", None)
    return folder if isinstance(folder, str) and folder and os.path.isdir(folder) else None


class CarriedLedger:
    """The ledger saved with a model, and how to keep a new space of that model consistent with it."""

    def __init__(self, saved, where: str):
        self.saved, self.where = saved, where
        self._all_fingerprints: torch.Tensor | None = None

    @classmethod
    def of(cls, model, space_cls) -> CarriedLedger | None:
        """The ledger in ``model``'s folder, or None when it has none (or no requests were served)."""
        folder = model_folder(model)
        where = os.path.join(folder, SAVED_SPACE_DIR) if folder else None
        if where is None or not os.path.isfile(os.path.join(where, "cgs_config.json")):
            return None
        try:
            saved = space_cls.from_pretrained(where)
        except ValueError as error:
            raise LedgerError(
                f"The model folder carries a Core Gradient Space ({where}) that cannot be read, so the requests it "
                f"records cannot be carried into a new space: {error} Restore it from a backup; move it away only "
                "if you accept losing that record (earlier requests could then be served again)."
            ) from error
        return cls(saved, where) if saved.ledger else None

    @property
    def num_forgotten(self) -> int:
        return sum(int(fps.numel()) for fps in self.saved.ledger_fingerprints)

    def leave_out(self, data, fingerprint_data=None):
        """``data`` (and ``fingerprint_data``, row for row) without the rows the ledger forgot."""
        rows = fingerprint_data if fingerprint_data is not None else data
        columns = self.saved.fingerprint_columns
        what = f"The model folder's space ({self.where}) records {len(self.saved.ledger)} request(s)"
        if not hasattr(rows, "column_names") or not hasattr(data, "select"):
            raise LedgerError(
                f"{what}; a new space must leave those rows out, which needs the training set as a datasets.Dataset "
                "(got batches). Pass the Dataset, or use the folder's space as it is."
            )
        missing = [c for c in columns or [] if c not in rows.column_names]
        if not columns or missing:
            raise LedgerError(
                f"{what}, fingerprinted over the columns {columns}; this data lacks {missing or 'them'}, so the "
                "forgotten rows cannot be found and left out. Build from the training set with those columns."
            )
        if fingerprint_data is not None and len(fingerprint_data) != len(data):
            raise LedgerError(f"{what}; the rows to fingerprint and the model's inputs differ in number.")
        fingerprints = fingerprint_examples(rows.select_columns(columns), columns, self.saved.fingerprint_key())
        forgotten = Counter(torch.cat(self.saved.ledger_fingerprints).tolist())
        keep = []
        for index, fp in enumerate(fingerprints.tolist()):
            if forgotten[fp] > 0:
                forgotten[fp] -= 1
            else:
                keep.append(index)
        self._all_fingerprints = fingerprints
        kept_data = data.select(keep)
        return kept_data, fingerprint_data.select(keep) if fingerprint_data is not None else None

    def carry_into(self, space):
        """``space`` (built from the rows ``leave_out`` kept) with the ledger's history and every row's
        fingerprint, as if each earlier request had been subtracted from it."""
        if self._all_fingerprints is None:
            raise RuntimeError("leave_out must run before carry_into")
        space.train_fingerprints = self._all_fingerprints
        space.fingerprint_columns = list(self.saved.fingerprint_columns)
        space.fingerprint_key_id = self.saved.fingerprint_key_id
        space.ledger = copy.deepcopy(self.saved.ledger)
        space.ledger_fingerprints = [fps.clone() for fps in self.saved.ledger_fingerprints]
        space.provenance = {**space.provenance, "ledger_carried_from": self.where}
        return space
