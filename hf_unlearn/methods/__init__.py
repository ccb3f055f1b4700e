"""The method registry: a literal dict, one small module per method (docs/methods.md)."""

from __future__ import annotations

from .base import UnlearningMethod
from .eupmu import EUPMU
from .eupmu_explicit import EUPMUExplicit
from .finetune import FineTune
from .fisher import FisherForgetting
from .gradient_ascent import GradientAscent, GradientAscentProjected
from .neggrad_plus import NegGradPlus
from .npo import NPO
from .pgu import PGU
from .random_labels import RandomLabels
from .salun import SalUn
from .scrub import SCRUB

METHODS: dict[str, type[UnlearningMethod]] = {
    "pgu": PGU,
    "eupmu": EUPMU,
    "eupmu_explicit": EUPMUExplicit,
    "finetune": FineTune,
    "gradient_ascent": GradientAscent,
    "ga_projected": GradientAscentProjected,
    "neggrad_plus": NegGradPlus,
    "random_labels": RandomLabels,
    "scrub": SCRUB,
    "salun": SalUn,
    "fisher": FisherForgetting,
    "npo": NPO,
}


def get_method(name: str) -> type[UnlearningMethod]:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"Unknown unlearning method {name!r}. Choose one of: {', '.join(sorted(METHODS))}.") from None


__all__ = ["METHODS", "UnlearningMethod", "get_method"]
