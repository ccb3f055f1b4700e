"""The method registry: one small module per method, keyed by each method's own ``name``.

Adding a method is its file (the class and its ``MethodConfig``) plus one line in ``_REGISTERED``.
"""

from __future__ import annotations

import dataclasses

from .base import MethodConfig, Paper, UnlearningContext, UnlearningMethod
from .eupmu import EUPMU
from .eupmu_explicit import EUPMUExplicit
from .finetune import FineTune
from .fisher import FisherForgetting
from .gradient_ascent import GradientAscent, GradientAscentProjected
from .neggrad_plus import NegGradPlus
from .npo import NPO
from .pgu import PGU
from .pgu_retain import PGURetain
from .random_labels import RandomLabels
from .salun import SalUn
from .scrub import SCRUB

_REGISTERED: tuple[type[UnlearningMethod], ...] = (
    PGU,
    PGURetain,
    EUPMU,
    EUPMUExplicit,
    FineTune,
    GradientAscent,
    GradientAscentProjected,
    NegGradPlus,
    RandomLabels,
    SCRUB,
    SalUn,
    FisherForgetting,
    NPO,
)
METHODS: dict[str, type[UnlearningMethod]] = {method.name: method for method in _REGISTERED}


DEFAULT_PATH = "auto"


def resolve_method(name: str, has_retain: bool) -> str:
    """``auto``, the library's default path: PGU with a retain loss when retain examples are given
    (it ended closer to retraining on every model of the fidelity suite, docs/benchmarks.md), PGU
    alone when only the forget set is."""
    if name != DEFAULT_PATH:
        return name
    return "pgu_retain" if has_retain else "pgu"


def hyperparameter_owners(name: str) -> list[str]:
    """The methods that take a hyperparameter called ``name`` (for error messages that point the way)."""
    return [m for m, cls in METHODS.items() if name in {f.name for f in dataclasses.fields(cls.config_class)}]


def get_method(name: str) -> type[UnlearningMethod]:
    """The method class; ``auto`` gives the class whose hyperparameters it accepts (``pgu_retain``'s)."""
    try:
        return METHODS[resolve_method(name, has_retain=True)]
    except KeyError:
        choices = ", ".join([DEFAULT_PATH, *sorted(METHODS)])
        raise ValueError(f"Unknown unlearning method {name!r}. Choose one of: {choices}.") from None


__all__ = [
    "METHODS",
    "MethodConfig",
    "Paper",
    "UnlearningContext",
    "UnlearningMethod",
    "get_method",
    "hyperparameter_owners",
]
