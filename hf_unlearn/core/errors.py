"""How the library refuses: a space of another model, a request the ledger cannot accept, a setup it does not run."""


class CGSMismatchError(ValueError):
    """The cache does not belong to this model (other layers, shapes or weights)."""


class LedgerError(ValueError):
    """A deletion request the ledger cannot accept (empty, repeated, or unknown examples)."""


class UnsupportedSetupError(RuntimeError):
    """A run configuration the library refuses on purpose (a sharding layout, an engine, several processes),
    with what to run instead: raised before any weight changes."""


def not_training_examples(rows: list[int], total: int, columns: list[str] | None) -> str:
    """Why a request naming ``rows`` (positions in the forget set) is refused, and the usual cause when the space
    fingerprinted processed inputs: the rows are training rows, processed differently than when it was built."""
    shown = ", ".join(map(str, rows[:5])) + (" ..." if len(rows) > 5 else "")
    processed = [c for c in ("input_ids", "pixel_values") if c in (columns or [])]
    hint = (
        f" Training rows fail this when their {processed[0]} differ from when the space was built: process them "
        "exactly as then (the same tokenizer, max_length and truncation; `hf-unlearn cgs build` and the recipe cut "
        "texts at --max_length 128)."
        if processed else ""
    )
    return (
        f"{len(rows)} of {total} forget examples (forget rows {shown}) are not in the data this cache was built from "
        f"(compared on columns {columns}). Only training examples can be forgotten.{hint}"
    )
