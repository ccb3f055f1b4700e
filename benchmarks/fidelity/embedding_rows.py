"""The default path with and without free input-embedding rows (``free_embedding_rows``), on the text scenarios.

    .venv/bin/python -m benchmarks.fidelity.embedding_rows      # runs what is missing, then writes the table

Each variant is the fidelity suite's default path (``pgu_retain``) with ``free_embedding_rows`` on (the default)
or off, in its own folder under ``outputs/fidelity_embedding_rows/``; originals and references come from the
suite's caches. Writes ``benchmarks/results/fidelity_embedding_rows.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from .scenarios import ALL_SCENARIOS
from .variants import gap_cell, run_missing

JOBS = {"warriner_electra_random": (0, 1), "warriner_electra_random1": (0, 1), "trec_minilm_random": (0, 1),
        "trec_minilm_user": (0, 1), "sms_minilm_random": (0,)}
VARIANTS = {"on": {}, "off": {"free_embedding_rows": False}}


def _run_missing(folder: Path) -> dict:
    jobs = [(name, seed) for name, seeds in JOBS.items() for seed in seeds]
    return {variant: run_missing(folder / variant, jobs, overrides) for variant, overrides in VARIANTS.items()}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/fidelity_embedding_rows")
    results = _run_missing(Path(parser.parse_args(argv).out))
    rows = []
    for name in JOBS:
        for seed, run in results["on"][name].items():
            reference = run["rows"]["reference"]
            cells = []
            for variant in VARIANTS:
                row = results[variant][name][seed]["rows"]["pgu_retain"]
                cells += [gap_cell(row, reference), f"{row['time']:.1f}"]
            tuned = "tuned on" if ALL_SCENARIOS[name].tuned_on else "held out"
            rows.append([f"{name} ({tuned})", seed, f"{run['rows']['reference_2']['gap']:.2f}",
                         f"{run['rows']['do_nothing']['gap']:.2f}", *cells])
    means = {v: statistics.fmean(results[v][n][s]["rows"]["pgu_retain"]["gap"] for n in JOBS for s in results[v][n])
             for v in VARIANTS}
    columns = ["scenario", "seed", "floor", "do nothing", "free rows: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)",
               "frozen table: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)"]
    print(markdown_table(columns, rows))
    write_results("fidelity_embedding_rows", {"tables": {"runs": table(
        columns, rows, title="Default path with the free input-embedding rows and with the table frozen (Avg. Gap)",
        notes=f"Mean Avg. Gap over the rows: {means['on']:.2f} with the free rows, {means['off']:.2f} without.",
    )}})


if __name__ == "__main__":
    main()
