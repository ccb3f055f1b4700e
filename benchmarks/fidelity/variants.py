"""The default path under one set of ``UnlearningArguments`` overrides, over (scenario, seed) jobs, resumable:
what the side-by-side fidelity benchmarks (``targets.py``, ``embedding_rows.py``) run for each of their columns."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import statistics
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import transformers

from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from . import run as suite
from .scenarios import ALL_SCENARIOS

# others: the default suite's families
CACHES = {"animal": "outputs/fidelity_mem_cache", "animal10k": "outputs/fidelity_mem_cache",
          "trec": "outputs/fidelity_trec_cache", "warriner": "outputs/fidelity_words_cache"}


def cache_of(name: str) -> Path:
    """Where a scenario's original and references are cached (shared with the suite's runs of that family)."""
    return Path(CACHES.get(name.split("_")[0], "outputs/fidelity_default_cache"))


def run_missing(folder: Path, jobs: Iterable[tuple[str, int]], overrides: dict,
                range_references: Callable[[str], int] = lambda name: 0) -> dict:
    """``pgu_retain`` with ``overrides`` for every job not yet in ``folder/results.json``; returns every result."""
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_unlearn").setLevel(logging.ERROR)
    path = folder / "results.json"
    done = json.loads(path.read_text()) if path.is_file() else {}
    for name, seed in jobs:
        if str(seed) in done.get(name, {}):
            continue
        print(f"{name} seed {seed}, {overrides}", flush=True)
        done.setdefault(name, {})[str(seed)] = suite.run_scenario(
            ALL_SCENARIOS[name], seed, ["pgu_retain"], cache_of(name), folder, overrides or None,
            range_references=range_references(name),
        )
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(done, indent=1))
    return done


def gap_cell(row: dict, reference: dict) -> str:
    """A run's Avg. Gap with each metric's difference from the first reference: "2.31 (-4.0/-0.4/+1.0/-3.5)"."""
    deltas = "/".join(f"{row[k] - reference[k]:+.1f}" for k in suite.KEYS)
    return f"{row['gap']:.2f} ({deltas})"


def run_side_by_side(folder: Path, jobs: dict[str, tuple[int, ...]], variants: dict[str, Callable]) -> dict:
    """The default path under each variant (a context manager factory, e.g. a patched rule), every (scenario, seed)
    run under all of them before the next, each variant in its own folder; returns every variant's results."""
    results = {}
    for name, seeds in jobs.items():
        for seed in seeds:
            for variant, context in variants.items():
                with context():
                    results[variant] = run_missing(folder / variant.replace(" ", "_"), [(name, seed)], {})
    return results


def side_by_side_tables(results: dict, names: list[str], variants: list[str]) -> tuple[list, list, list, list]:
    """(run columns, run rows, mean columns, mean rows) of ``run_side_by_side``'s results: per seed, each variant's
    gap cell and time; per scenario, each variant's mean gap, mean ΔRA and how many seeds end farther from the first
    reference than doing nothing."""
    runs, means = [], []
    for name in names:
        seeds = dict(sorted(results[variants[-1]][name].items(), key=lambda item: int(item[0])))
        reference = {s: run["rows"]["reference"] for s, run in seeds.items()}
        for seed, run in seeds.items():
            cells = []
            for variant in variants:
                row = results[variant][name][seed]["rows"]["pgu_retain"]
                cells += [gap_cell(row, reference[seed]), f"{row['time']:.1f}"]
            runs.append([name, seed, f"{run['rows']['reference_2']['gap']:.2f}",
                         f"{run['rows']['do_nothing']['gap']:.2f}", *cells])
        cells = []
        for variant in variants:
            rows = {s: results[variant][name][s]["rows"]["pgu_retain"] for s in seeds}
            farther = sum(rows[s]["gap"] > seeds[s]["rows"]["do_nothing"]["gap"] for s in seeds)
            cells += [f"{statistics.fmean(r['gap'] for r in rows.values()):.2f}",
                      f"{statistics.fmean(rows[s]['RA'] - reference[s]['RA'] for s in seeds):+.2f}",
                      f"{farther} of {len(seeds)}"]
        floor = statistics.fmean(run["rows"]["reference_2"]["gap"] for run in seeds.values())
        tuned = "tuned on" if ALL_SCENARIOS[name].tuned_on else "held out"
        means.append([f"{name} ({tuned})", ", ".join(seeds), f"{floor:.2f}", f"{1.5 * floor + 0.5:.2f}",
                      f"{statistics.fmean(run['rows']['do_nothing']['gap'] for run in seeds.values()):.2f}", *cells])
    run_columns = ["scenario", "seed", "reference_2", "do nothing"]
    mean_columns = ["scenario", "seeds", "floor", "bar 1.5·floor+0.5", "do nothing"]
    for variant in variants:
        run_columns += [f"{variant}: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)"]
        mean_columns += [f"{variant}: gap", "ΔRA", "farther than doing nothing"]
    return run_columns, runs, mean_columns, means


unchanged = contextlib.nullcontext


def side_by_side_main(argv: list[str] | None, *, doc: str, benchmark: str, jobs: dict[str, tuple[int, ...]],
                      variants: dict[str, Callable], title: str) -> None:
    """A side-by-side benchmark's command line: ``--out`` (default ``outputs/<benchmark>``) and ``--scenarios``, the
    runs that are missing, then its two tables printed and written to ``benchmarks/results/<benchmark>.json``."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=f"outputs/{benchmark}")
    parser.add_argument("--scenarios", nargs="*", default=list(jobs), choices=list(jobs),
                        help="a subset of the scenarios (the tables then cover only those)")
    args = parser.parse_args(argv)
    results = run_side_by_side(Path(args.out), {name: jobs[name] for name in args.scenarios}, variants)
    run_columns, runs, mean_columns, means = side_by_side_tables(results, args.scenarios, list(variants))
    print(markdown_table(mean_columns, means))
    print(markdown_table(run_columns, runs))
    write_results(benchmark, {"tables": {
        "means": table(mean_columns, means, title=f"{title} (means over seeds; Δ against the first retrained model)"),
        "runs": table(run_columns, runs, title="Per seed: Avg. Gap and each metric's difference from the first "
                      "reference"),
    }})
