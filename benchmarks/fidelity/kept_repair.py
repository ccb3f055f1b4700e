"""The default path with and without the repair of flipped kept examples (``pgu_repair_steps``), on the
memorization-regime scenarios and the default suite's random requests.

    .venv/bin/python -m benchmarks.fidelity.kept_repair      # runs what is missing, then writes the tables

Each variant is the fidelity suite's default path (``pgu_retain``) in its own folder under
``outputs/fidelity_kept_repair/``, each (scenario, seed) run both ways before the next; originals and references come
from the suite's caches. Writes ``benchmarks/results/fidelity_kept_repair.json``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from .scenarios import ALL_SCENARIOS
from .variants import gap_cell, run_missing

JOBS = {"animal_resnet_random": tuple(range(6)), "animal_resnet_random1": (0, 1), "animal_resnet_user": (0, 1),
        "animal_vit_random": (0, 1), "trec_minilm_random": (0, 1), "trec_minilm_user": (0, 1),
        "digits_cnn_random": (0,), "mnist_resnet_random": (0,), "mnist_vit_random": (0,), "sms_minilm_random": (0,),
        "warriner_electra_random": (0, 1), "warriner_electra_random1": (0, 1),
        "animal10k_resnet_random": (0, 1), "animal10k_resnet_random1": (0, 1)}
VARIANTS = {"off": {"method_kwargs": {"pgu_repair_steps": 0}}, "on": {}}
COST_JOBS = (("animal_resnet_random", 0), ("animal_resnet_random", 1), ("animal10k_resnet_random", 0),
             ("mnist_vit_random", 0), ("trec_minilm_random", 0), ("sms_minilm_random", 0))


def _run_missing(folder: Path, names: list[str]) -> dict:
    results = {variant: {} for variant in VARIANTS}
    for name in names:
        for seed in JOBS[name]:
            for variant, overrides in VARIANTS.items():
                results[variant] = run_missing(folder / variant, [(name, seed)], overrides)
    return results


def _row(run: dict, key: str) -> dict:
    return run["rows"][key]


def _runs_rows(results: dict, names: list[str]) -> list[list]:
    rows = []
    for name in names:
        for seed, run in results["on"][name].items():
            reference = _row(run, "reference")
            cells = []
            for variant in VARIANTS:
                row = _row(results[variant][name][seed], "pgu_retain")
                cells += [gap_cell(row, reference), f"{row['time']:.1f}"]
            second = _row(run, "reference_2")
            rows.append([name, seed, f"{second['gap']:.2f} ({second['TA'] - reference['TA']:+.1f})",
                         f"{_row(run, 'do_nothing')['gap']:.2f}", *cells])
    return rows


def _mean_rows(results: dict, names: list[str]) -> list[list]:
    means = []
    for name in names:
        runs = results["on"][name]
        floor = statistics.fmean(_row(r, "reference_2")["gap"] for r in runs.values())
        cells = []
        for variant in VARIANTS:
            rows = {s: _row(results[variant][name][s], "pgu_retain") for s in runs}
            reference = {s: _row(runs[s], "reference") for s in runs}
            second = {s: _row(runs[s], "reference_2") for s in runs}
            gap = statistics.fmean(row["gap"] for row in rows.values())
            ra = [rows[s]["RA"] - reference[s]["RA"] for s in runs]
            ta_ok = sum(abs(rows[s]["TA"] - reference[s]["TA"]) <= abs(second[s]["TA"] - reference[s]["TA"]) + 0.5
                        for s in runs)
            cost = statistics.fmean(rows[s]["time"] / reference[s]["time"] for s in runs)
            cells += [f"{gap:.2f}", f"{statistics.fmean(ra):+.2f} ({sum(abs(d) <= 1.0 for d in ra)} of {len(ra)})",
                      f"{ta_ok} of {len(ra)}", f"{cost:.2f}"]
        tuned = "tuned on" if ALL_SCENARIOS[name].tuned_on else "held out"
        means.append([f"{name} ({tuned})", ", ".join(runs), f"{floor:.2f}", f"{1.5 * floor + 0.5:.2f}",
                      f"{statistics.fmean(_row(r, 'do_nothing')['gap'] for r in runs.values()):.2f}", *cells])
    return means


def _repair_costs() -> list[list]:
    """The repair's own seconds inside a default-path run (timed around it), with what it read and did."""
    import hf_unlearn.training.trainer as trainer_module
    from hf_unlearn.training import kept_repair

    timed = {}

    def timed_repair(trainer, steps):
        start = time.perf_counter()
        report = kept_repair.repair_kept_examples(trainer, steps)
        timed.update(report=report, seconds=time.perf_counter() - start)
        return report

    rows = []
    original, trainer_module.repair_kept_examples = trainer_module.repair_kept_examples, timed_repair
    try:
        with tempfile.TemporaryDirectory() as folder:
            for name, seed in COST_JOBS:
                timed.clear()
                run = run_missing(Path(folder), [(name, seed)], {})[name][str(seed)]["rows"]["pgu_retain"]
                report = timed["report"]
                rows.append([name, seed, report.scanned, report.flipped, report.steps, f"{timed['seconds']:.2f}",
                             f"{run['time']:.1f}"])
    finally:
        trainer_module.repair_kept_examples = original
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/fidelity_kept_repair")
    parser.add_argument("--scenarios", nargs="*", default=list(JOBS), choices=list(JOBS),
                        help="a subset of the scenarios (the tables then cover only those)")
    args = parser.parse_args(argv)
    results = _run_missing(Path(args.out), args.scenarios)
    columns = ["scenario", "seed", "reference_2: gap (ΔTA)", "do nothing", "no repair: gap (ΔUA/ΔRA/ΔTA/ΔMIA)",
               "time (s)", "repair: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)"]
    mean_columns = ["scenario", "seeds", "floor", "bar 1.5·floor+0.5", "do nothing",
                    "no repair: gap", "ΔRA (seeds within 1)", "TA within reference_2's + 0.5", "time ÷ retraining",
                    "repair: gap", "ΔRA (seeds within 1)", "TA within reference_2's + 0.5", "time ÷ retraining"]
    rows, means = _runs_rows(results, args.scenarios), _mean_rows(results, args.scenarios)
    cost_columns = ["scenario", "seed", "kept examples read", "flipped", "repair steps", "repair (s)", "whole run (s)"]
    costs = _repair_costs()
    print(markdown_table(mean_columns, means))
    print(markdown_table(columns, rows))
    print(markdown_table(cost_columns, costs))
    write_results("fidelity_kept_repair", {"tables": {
        "means": table(mean_columns, means, title="Default path without and with the repair of flipped kept examples "
                       "(means over seeds; Δ against the first retrained model)"),
        "runs": table(columns, rows, title="Per seed: Avg. Gap and each metric's difference from the first reference"),
        "cost": table(cost_columns, costs, title="What the repair itself costs, timed inside one default-path run "
                      "each (2 threads)"),
    }})


if __name__ == "__main__":
    main()
