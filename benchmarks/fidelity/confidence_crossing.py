"""The default path with a confidence crossing that stops at once (the earlier rule) and one judged as an accuracy
crossing is: back to the previous good state at half the step when it was closer to the target and this one lies
past it by more than the samples' resolution (``UnlearningControl._confidence_went_back``).

    .venv/bin/python -m benchmarks.fidelity.confidence_crossing      # runs what is missing, then writes the tables

The same jobs as ``kept_repair.py``, each (scenario, seed) run both ways before the next, in its own folder under
``outputs/fidelity_confidence_crossing/``; originals and references come from the suite's caches. A run whose stop
was not a confidence crossing takes the same steps either way. Writes
``benchmarks/results/fidelity_confidence_crossing.json``.
"""

from __future__ import annotations

from unittest import mock

from hf_unlearn.control.controller import UnlearningControl

from .kept_repair import JOBS
from .variants import side_by_side_main, unchanged


def _stop_at_once():
    """The earlier rule: a confidence crossing never goes back."""
    return mock.patch.object(UnlearningControl, "_confidence_went_back", lambda self, *args: False)


VARIANTS = {"stop at once": _stop_at_once, "judged as an accuracy crossing": unchanged}


def main(argv=None) -> None:
    side_by_side_main(argv, doc=__doc__, benchmark="fidelity_confidence_crossing", jobs=JOBS, variants=VARIANTS,
                      title="Default path, a confidence crossing stopping at once or judged as an accuracy "
                      "crossing")


if __name__ == "__main__":
    main()
