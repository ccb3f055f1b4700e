"""The sample-removal target side by side: the whole validation sample, each forget example's nearest validation
examples, and the higher of the two ("cautious"), on the memorization-regime scenarios (default path, 2 seeds).

    .venv/bin/python -m benchmarks.fidelity.targets            # runs what is missing, then writes the table

Each variant is the fidelity suite run with ``--override sample_removal_target=...`` (and the input-embedding table
frozen, ``free_embedding_rows=False``, as these were measured) into its own folder under
``outputs/fidelity_targets/``; originals and references come from the suite's caches, so only the unlearning
runs are new. Writes ``benchmarks/results/fidelity_targets.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from .scenarios import ALL_SCENARIOS, MEMORIZATION_SCENARIOS, TEXT_MEMORIZATION_SCENARIOS
from .variants import gap_cell, run_missing

TARGETS = ("validation", "neighbours", "cautious")


DEFAULT_ROWS = ("digits_cnn_random", "mnist_resnet_random", "mnist_vit_random", "sms_minilm_random")  # seed 0 only


def _jobs(seeds: list[int]) -> list[tuple[str, int]]:
    """Every memorization-regime scenario at ``seeds``, the default suite's random requests at the first seed."""
    return [(name, seed) for name in (*MEMORIZATION_SCENARIOS, *TEXT_MEMORIZATION_SCENARIOS) for seed in seeds] + [
        (name, seeds[0]) for name in DEFAULT_ROWS
    ]


def _run_missing(folder: Path, seeds: list[int]) -> None:
    """The default path under each target, for every scenario and seed not yet run (the table frozen, as measured)."""
    for target in TARGETS:
        run_missing(folder / target, _jobs(seeds), {"sample_removal_target": target, "free_embedding_rows": False},
                    range_references=lambda name: 2 if name.startswith("animal") else 0)


def _rows(folder: Path) -> tuple[list[list[str]], list[list[str]]]:
    results = {t: json.loads((folder / t / "results.json").read_text()) for t in TARGETS}
    means, seeds = [], []
    for name in (*MEMORIZATION_SCENARIOS, *TEXT_MEMORIZATION_SCENARIOS, *DEFAULT_ROWS):
        runs = results["validation"][name]
        floor = statistics.fmean(r["rows"]["reference_2"]["gap"] for r in runs.values())
        nothing = statistics.fmean(r["rows"]["do_nothing"]["gap"] for r in runs.values())
        label = f"{name} ({'tuned on' if ALL_SCENARIOS[name].tuned_on else 'held out'}; seeds {', '.join(runs)})"
        gaps = {t: statistics.fmean(r["rows"]["pgu_retain"]["gap"] for r in results[t][name].values())
                for t in TARGETS}
        means.append([label, f"{floor:.2f}", f"{1.5 * floor + 0.5:.2f}", f"{nothing:.2f}",
                      *(f"{gaps[t]:.2f}" for t in TARGETS)])
        for seed, run in runs.items():
            reference = run["rows"]["reference"]
            cells = []
            for t in TARGETS:
                row = results[t][name][seed]["rows"]["pgu_retain"]
                cells.append(gap_cell(row, reference))
            seeds.append([name, seed, f"{run['rows']['do_nothing']['gap']:.2f}", *cells])
    return means, seeds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--out", default="outputs/fidelity_targets")
    args = parser.parse_args(argv)
    folder = Path(args.out)
    _run_missing(folder, args.seeds)
    means, seeds = _rows(folder)
    mean_columns = ["scenario", "floor", "bar 1.5·floor+0.5", "do nothing", *(f"target: {t}" for t in TARGETS)]
    seed_columns = ["scenario", "seed", "do nothing", *(f"{t}: gap (ΔUA/ΔRA/ΔTA/ΔMIA)" for t in TARGETS)]
    print(markdown_table(mean_columns, means), "\n", markdown_table(seed_columns, seeds), sep="")
    write_results("fidelity_targets", {"tables": {
        "means": table(mean_columns, means, title="Default path's Avg. Gap by sample-removal target (means over "
                       "seeds 0 and 1)"),
        "per_seed": table(seed_columns, seeds, title="Per seed: Avg. Gap and each metric's difference from the "
                          "first reference"),
    }})


if __name__ == "__main__":
    main()
