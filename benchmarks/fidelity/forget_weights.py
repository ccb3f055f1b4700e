"""The default path with and without the forget loss's neighbour weights (``pgu_neighbour_weights``), on the
memorization-regime scenarios and the default suite's random requests; and how well the weights' signal (the
share of a forgotten example's nearest kept examples that carry its label) tells which forgotten examples a
retrained model still gets right.

    .venv/bin/python -m benchmarks.fidelity.forget_weights      # runs what is missing, then writes the tables

Each variant is the fidelity suite's default path (``pgu_retain``) in its own folder under
``outputs/fidelity_forget_weights/``; originals and references come from the suite's caches. Writes
``benchmarks/results/fidelity_forget_weights.json``.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from hf_unlearn.evaluation.tables import markdown_table

from ..results_io import table, write_results
from .scenarios import ALL_SCENARIOS
from .variants import gap_cell, run_missing

JOBS = {"animal_resnet_random": tuple(range(6)), "animal_resnet_user": (0, 1), "animal_resnet_random1": (0, 1),
        "animal_vit_random": (0, 1), "trec_minilm_random": (0, 1), "trec_minilm_user": (0, 1),
        "warriner_electra_random": (0, 1), "warriner_electra_random1": (0, 1),
        "digits_cnn_random": (0,), "mnist_resnet_random": (0,), "mnist_vit_random": (0,), "sms_minilm_random": (0,)}
VARIANTS = {"on": {}, "off": {"method_kwargs": {"pgu_neighbour_weights": False}}}
PER_EXAMPLE_NOTE = (
    "Per example: the mean over forget examples of |logit-scaled confidence − its mean under the two references| "
    "(dist, benchmarks/fidelity/per_example.py). reference_2 is one of the two, so it reads half the two "
    "references' distance; a third retrained model would read about √3 ≈ 1.73 times reference_2's "
    "(E|x − (a + b)/2| = √3·E|b − (a + b)/2| for independent Gaussian x, a, b; an estimate, not measured)."
)
SIGNAL_JOBS = {"animal_resnet_random": (0, 1), "trec_minilm_random": (0, 1)}


def _run_missing(folder: Path) -> dict:
    jobs = [(name, seed) for name, seeds in JOBS.items() for seed in seeds]
    return {variant: run_missing(folder / variant, jobs, overrides) for variant, overrides in VARIANTS.items()}


def _runs_table(results: dict) -> tuple[list[list], list[list]]:
    rows, means = [], []
    for name in JOBS:
        runs = results["on"][name]
        for seed, run in runs.items():
            reference = run["rows"]["reference"]
            cells = []
            for variant in ("off", "on"):
                row = results[variant][name][seed]["rows"]["pgu_retain"]
                cells += [gap_cell(row, reference), f"{row['time']:.1f}"]
            rows.append([name, seed, f"{run['rows']['reference_2']['gap']:.2f}",
                         f"{run['rows']['do_nothing']['gap']:.2f}", *cells])
        floor = statistics.fmean(r["rows"]["reference_2"]["gap"] for r in runs.values())
        gaps = {v: statistics.fmean(results[v][name][s]["rows"]["pgu_retain"]["gap"] for s in runs)
                for v in VARIANTS}
        better = sum(results["on"][name][s]["rows"]["pgu_retain"]["gap"]
                     < results["off"][name][s]["rows"]["pgu_retain"]["gap"] for s in runs)
        dist = {v: statistics.fmean(results[v][name][s]["rows"]["pgu_retain"]["dist"] for s in runs) for v in VARIANTS}
        dist_floor = statistics.fmean(r["rows"]["reference_2"]["dist"] for r in runs.values())
        tuned = "tuned on" if ALL_SCENARIOS[name].tuned_on else "held out"
        means.append([f"{name} ({tuned})", ", ".join(runs), f"{floor:.2f}", f"{1.5 * floor + 0.5:.2f}",
                      f"{statistics.fmean(r['rows']['do_nothing']['gap'] for r in runs.values()):.2f}",
                      f"{gaps['off']:.2f}", f"{gaps['on']:.2f}", f"{better} of {len(runs)}",
                      f"{dist_floor:.2f}", f"{dist['off']:.2f} / {dist['on']:.2f}"])
    return rows, means


def _signal_rows() -> list[list]:
    """Per scenario and seed: ROC AUC of the neighbour agreement (under the original) for "the first retrained
    model gets this forgotten example right", and the same for the original's own true-label probability."""
    from sklearn.metrics import roc_auc_score

    from hf_unlearn.evaluation.predict import collect_outputs
    from hf_unlearn.methods.neighbour_weights import RetainNeighbours
    from hf_unlearn.training.neighbour_target import middle_features

    from . import run as suite
    from .variants import cache_of

    rows = []
    for name, seeds in SIGNAL_JOBS.items():
        scenario = ALL_SCENARIOS[name]
        for seed in seeds:
            original, reference, forget, retain, collate = suite.request_models(scenario, seed, cache_of(name))
            kept = middle_features(original, retain, collate, "cpu")
            bank = RetainNeighbours(kept["features"], kept["labels"])
            query = middle_features(original, forget, collate, "cpu")
            agreement = bank.agreement(query["features"], query["labels"])
            out = collect_outputs(reference, forget, collate_fn=collate, device="cpu")
            right = (out["logits"].argmax(-1) == out["labels"]).numpy()
            rows.append([name, seed, f"{100 * right.mean():.1f}", f"{roc_auc_score(right, agreement.numpy()):.2f}",
                         f"{roc_auc_score(right, query['p_true'].numpy()):.2f}",
                         f"{100 * float((agreement == 1).float().mean()):.0f}"])
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="outputs/fidelity_forget_weights")
    torch.set_num_threads(2)
    results = _run_missing(Path(parser.parse_args(argv).out))
    rows, means = _runs_table(results)
    signal = _signal_rows()
    columns = ["scenario", "seed", "floor", "do nothing", "uniform: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)",
               "neighbour weights: gap (ΔUA/ΔRA/ΔTA/ΔMIA)", "time (s)"]
    mean_columns = ["scenario", "seeds", "floor", "bar 1.5·floor+0.5", "do nothing", "uniform", "neighbour weights",
                    "seeds closer with weights", "per example: reference_2", "per example: uniform / weights"]
    signal_columns = ["scenario", "seed", "retrained model's forget accuracy %", "AUC: neighbour agreement",
                      "AUC: original's true-label probability", "forget examples all of whose neighbours agree %"]
    print(markdown_table(mean_columns, means))
    print(markdown_table(columns, rows))
    print(markdown_table(signal_columns, signal))
    write_results("fidelity_forget_weights", {"tables": {
        "means": table(mean_columns, means, title="Default path's Avg. Gap with uniform forget weights and with the "
                       "neighbour weights (means over seeds)", notes=PER_EXAMPLE_NOTE),
        "runs": table(columns, rows, title="Per seed: Avg. Gap and each metric's difference from the first reference"),
        "signal": table(signal_columns, signal, title="How well each signal, read under the original before any "
                        "step, tells which forgotten examples the first retrained model gets right (ROC AUC)"),
    }})


if __name__ == "__main__":
    main()
