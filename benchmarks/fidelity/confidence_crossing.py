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
import statistics
from pathlib import Path

from hf_unlearn.control.controller import UnlearningControl
from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from .kept_repair import JOBS
from .scenarios import ALL_SCENARIOS
from .variants import gap_cell, run_missing

VARIANTS = ("stop at once", "judged as an accuracy crossing")


@contextlib.contextmanager
def _variant(name: str):
    """The earlier rule: a confidence crossing never goes back."""
    if name == VARIANTS[1]:
        yield
        return
    judged = UnlearningControl._confidence_went_back
    UnlearningControl._confidence_went_back = lambda self, metrics, optimizer, lr_scheduler: False
    try:
        yield
    finally:
        UnlearningControl._confidence_went_back = judged


def _run_missing(folder: Path, names: list[str]) -> dict:
    results = {}
    for name in names:
        for seed in JOBS[name]:
            for variant in VARIANTS:
                with _variant(variant):
                    results[variant] = run_missing(folder / variant.replace(" ", "_"), [(name, seed)], {})
    return results


def _rows(results: dict, names: list[str]) -> tuple[list[list], list[list]]:
    runs, means = [], []
    for name in names:
        seeds = dict(sorted(results[VARIANTS[1]][name].items(), key=lambda item: int(item[0])))
        reference = {s: run["rows"]["reference"] for s, run in seeds.items()}
        for seed, run in seeds.items():
            cells = []
            for variant in VARIANTS:
                row = results[variant][name][seed]["rows"]["pgu_retain"]
                cells += [gap_cell(row, reference[seed]), f"{row['time']:.1f}"]
            runs.append([name, seed, f"{run['rows']['reference_2']['gap']:.2f}",
                         f"{run['rows']['do_nothing']['gap']:.2f}", *cells])
        cells = []
        for variant in VARIANTS:
            rows = {s: results[variant][name][s]["rows"]["pgu_retain"] for s in seeds}
            farther = sum(rows[s]["gap"] > seeds[s]["rows"]["do_nothing"]["gap"] for s in seeds)
            cells += [f"{statistics.fmean(r['gap'] for r in rows.values()):.2f}",
                      f"{statistics.fmean(rows[s]['RA'] - reference[s]['RA'] for s in seeds):+.2f}",
                      f"{farther} of {len(seeds)}"]
        floor = statistics.fmean(run["rows"]["reference_2"]["gap"] for run in seeds.values())
        tuned = "tuned on" if ALL_SCENARIOS[name].tuned_on else "held out"
        means.append([f"{name} ({tuned})", ", ".join(seeds), f"{floor:.2f}", f"{1.5 * floor + 0.5:.2f}",
                      f"{statistics.fmean(run['rows']['do_nothing']['gap'] for run in seeds.values()):.2f}", *cells])
    return runs, means


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/fidelity_confidence_crossing")
    parser.add_argument("--scenarios", nargs="*", default=list(JOBS), choices=list(JOBS),
                        help="a subset of the scenarios (the tables then cover only those)")
    args = parser.parse_args(argv)
    results = _run_missing(Path(args.out), args.scenarios)
    runs, means = _rows(results, args.scenarios)
    run_columns = ["scenario", "seed", "reference_2", "do nothing"]
    mean_columns = ["scenario", "seeds", "floor", "bar 1.5·floor+0.5", "do nothing"]
    for variant in VARIANTS:
        run_columns += [f"{variant}: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)"]
        mean_columns += [f"{variant}: gap", "ΔRA", "farther than doing nothing"]
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
