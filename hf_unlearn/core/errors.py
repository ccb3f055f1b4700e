"""How the library refuses: a space of another model, a request the ledger cannot accept, a setup it does not run."""


class CGSMismatchError(ValueError):
    """The cache does not belong to this model (other layers, shapes or weights)."""


class LedgerError(ValueError):
    """A deletion request the ledger cannot accept (empty, repeated, or unknown examples)."""


class UnsupportedSetupError(RuntimeError):
    """A run configuration the library refuses on purpose (a sharding layout, an engine, several processes),
    with what to run instead: raised before any weight changes."""
