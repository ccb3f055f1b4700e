"""The method registry: a literal dict, one small module per method."""

from __future__ import annotations

from .base import UnlearningMethod
from .pgu import PGU

METHODS: dict[str, type[UnlearningMethod]] = {
    "pgu": PGU,
}


def get_method(name: str) -> type[UnlearningMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown unlearning method {name!r}. Choose one of: {', '.join(sorted(METHODS))}.") from None


__all__ = ["METHODS", "UnlearningMethod", "get_method"]
