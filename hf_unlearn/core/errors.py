"""The two ways a space refuses: it belongs to another model, or the request cannot be accepted."""


class CGSMismatchError(ValueError):
    """The cache does not belong to this model (other layers, shapes or weights)."""


class LedgerError(ValueError):
    """A deletion request the ledger cannot accept (empty, repeated, or unknown examples)."""
