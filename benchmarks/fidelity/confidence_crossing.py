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

import argparse
import contextlib
from pathlib import Path

from hf_unlearn.control.controller import UnlearningControl
from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from .kept_repair import JOBS
from .variants import run_side_by_side, side_by_side_tables, unchanged


@contextlib.contextmanager
def _stop_at_once():
    """The earlier rule: a confidence crossing never goes back."""
    judged = UnlearningControl._confidence_went_back
    UnlearningControl._confidence_went_back = lambda self, metrics, optimizer, lr_scheduler: False
    try:
        yield
    finally:
        UnlearningControl._confidence_went_back = judged


VARIANTS = {"stop at once": _stop_at_once, "judged as an accuracy crossing": unchanged}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/fidelity_confidence_crossing")
    parser.add_argument("--scenarios", nargs="*", default=list(JOBS), choices=list(JOBS),
                        help="a subset of the scenarios (the tables then cover only those)")
    args = parser.parse_args(argv)
    results = run_side_by_side(Path(args.out), {name: JOBS[name] for name in args.scenarios}, VARIANTS)
    run_columns, runs, mean_columns, means = side_by_side_tables(results, args.scenarios, list(VARIANTS))
    print(markdown_table(mean_columns, means))
    print(markdown_table(run_columns, runs))
    write_results("fidelity_confidence_crossing", {"tables": {
        "means": table(mean_columns, means, title="Default path, a confidence crossing stopping at once or judged as "
                       "an accuracy crossing (means over seeds; Δ against the first retrained model)"),
        "runs": table(run_columns, runs, title="Per seed: Avg. Gap and each metric's difference from the first "
                      "reference"),
    }})


if __name__ == "__main__":
    main()
