"""The method registry: one small module per method, keyed by each method's own ``name``.

Adding a method is its file (the class and its ``MethodConfig``) plus one line in ``_REGISTERED``, or
``register_method(MyMethod)`` from outside the package. Registration checks what the rest of the library
relies on: the name is a new ``--method`` value, and every hyperparameter starts with the method's prefix,
the first word of its name (``pgu_delta`` for ``pgu`` and ``pgu_retain``, ``neggrad_alpha`` for
``neggrad_plus``), because hyperparameters share one command line with ``UnlearningArguments``.
"""

from __future__ import annotations

import dataclasses
import re

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
from .rmu import RMU
from .salun import SalUn
from .scrub import SCRUB
from .simnpo import SimNPO

DEFAULT_PATH = "auto"
_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
METHODS: dict[str, type[UnlearningMethod]] = {}


def method_prefix(name: str) -> str:
    """The prefix every hyperparameter of method ``name`` starts with: its first word and an underscore."""
    return name.split("_", 1)[0] + "_"


def register_method(method: type[UnlearningMethod]) -> type[UnlearningMethod]:
    """Add ``method`` to ``METHODS`` (also as a class decorator) after checking its name and hyperparameters.

    Refused: a class that is not an ``UnlearningMethod``, a name that is not lowercase words joined by single
    underscores, ``auto`` or a name another class holds, a ``config_class`` that is not a ``MethodConfig``
    dataclass, and hyperparameters without the method's prefix (``method_prefix``).
    """
    if not (isinstance(method, type) and issubclass(method, UnlearningMethod)):
        raise TypeError(f"register_method takes an UnlearningMethod subclass, got {method!r}.")
    name = method.name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(
            f"{method.__name__}.name = {name!r}: a method name is lowercase letters and digits, words joined by "
            "single underscores (e.g. 'pgu_retain'); it is what --method takes."
        )
    holder = METHODS.get(name)
    if name == DEFAULT_PATH or (holder is not None and holder is not method):
        taken = "the default path" if name == DEFAULT_PATH else holder.__name__
        raise ValueError(f"Method name {name!r} is taken by {taken}: give {method.__name__} another name.")
    config = method.config_class
    if not (isinstance(config, type) and issubclass(config, MethodConfig) and dataclasses.is_dataclass(config)):
        raise TypeError(f"{method.__name__}.config_class must be a MethodConfig dataclass, got {config!r}.")
    prefix = method_prefix(name)
    unprefixed = [f.name for f in dataclasses.fields(config) if not f.name.startswith(prefix)]
    if unprefixed:
        raise ValueError(
            f"Method {name!r}: hyperparameter(s) {', '.join(unprefixed)} of {config.__name__} must start with "
            f"{prefix!r} (the first word of the method's name), so they never collide with UnlearningArguments "
            "or another method's on the command line."
        )
    METHODS[name] = method
    return method


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
    SimNPO,
    RMU,
)
for _method in _REGISTERED:
    register_method(_method)


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
    "method_prefix",
    "register_method",
]
