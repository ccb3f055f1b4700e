"""Every method through the per-example audit on digits: the challenge score and U-LiRA with 16 models a side.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.audit
    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.audit --methods none,auto     # a piece (runs are cached)

The digits small CNN with the demo's recipe (40 epochs, AdamW 2e-3, batch 32), 10 % of the training rows forgotten
at random; ``hf-unlearn audit`` does the work (16 retrains, 16 more for the retrain-vs-retrain ceiling, 16 runs
per method from one original, each cached in ``--output_dir``), so the run can be split into pieces that each
add methods, and the last one, with every method, writes ``benchmarks/results/audit.json``.
"""

from __future__ import annotations

import argparse

from hf_unlearn.scripts.audit import main as audit_main

from .results_io import table, write_results

METHODS = "none,auto,pgu,eupmu,finetune,neggrad_plus,scrub"
LABELS = {"none": "do nothing (the original)", "auto": "default path (auto)", "ceiling": "retrain vs retrain (ceiling)"}
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.audit"


def _cells(name: str, family: dict) -> list[str]:
    attack = family["ulira"]
    incomplete = "" if family["incomplete_runs"] is None else f"{family['incomplete_runs']}/{family['num_models']}"
    return [LABELS.get(name, name), f"{family['forget_score']:.3f}", f"{family['final_score']:.3f}",
            f"{attack['auc']:.3f}", f"{attack['accuracy']:.3f}", f"{attack['model_auc']:.3f}",
            f"{family['spread_ratio']:.2f}", f"{family['mean_shift']:.2f}",
            f"{family['forget_accuracy']:.1f}", f"{family['test_accuracy']:.1f}", f"{family['seconds_per_run']:.2f}",
            incomplete]


def tables(report: dict) -> dict:
    families, ref = report["families"], report["retrained"]
    n = report["setup"]["num_models"]
    rows = [_cells(name, family) for name, family in families.items()]
    rows.append(["retrained models (the reference)", "", "", "", "", "", "", "", f"{ref['forget_accuracy']:.1f}",
                 f"{ref['test_accuracy']:.1f}", f"{ref['seconds_per_run']:.2f}", ""])
    scores = table(
        ["family", "forget score", "final score", "U-LiRA AUC", "U-LiRA acc", "model-level AUC", "spread", "shift",
         "forget acc",
         "test acc", "s / run", "incomplete"], rows,
        title=f"Digits small CNN, {report['setup']['num_forget']} random forget rows, {n} models a side",
        notes="Forget score: higher is better (0: every forget example tells the method's models from retrained "
              "ones); final score: x retain and test accuracy relative to retraining. U-LiRA AUC / acc: the "
              "per-example likelihood-ratio attack over (model, example) pairs, 0.5 = indistinguishable; "
              "model-level AUC: one decision per model from all forget examples. Spread: the family's seed-to-seed "
              "standard deviation of an example's confidence over the retrained models' (median); shift: the gap "
              "of the means in retrained standard deviations (median). s / run: one unlearning run "
              "(one retraining for the ceiling and reference rows), one CPU thread; the Core Gradient Space that "
              "pgu and the default path use is built once per original and not counted. Incomplete: runs whose "
              "stop rule ended before its target.")
    steps = [s["num_models"] for s in next(iter(families.values()))["by_num_models"]]
    by_n = table(["family"] + [f"n = {k}" for k in steps],
                 [[LABELS.get(name, name)] + [f"{s['forget_score']:.3f} / {s['ulira_auc']:.3f}"
                                              for s in family["by_num_models"]]
                  for name, family in families.items()],
                 title="Forget score / U-LiRA AUC with the first n models a side")
    return {"scores": scores, "by_num_models": by_n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=METHODS)
    parser.add_argument("--num_models", type=int, default=16)
    parser.add_argument("--output_dir", default="outputs/audit_benchmark")
    args = parser.parse_args()
    report = audit_main(["--methods", args.methods, "--num_models", str(args.num_models), "--ceiling",
                         "--output_dir", args.output_dir])
    if args.methods == METHODS and args.num_models == 16:
        payload = {"tables": tables(report), "audit_command": (
            f"hf-unlearn audit --num_models 16 --methods {METHODS} --ceiling"),
            "families": {name: {k: v for k, v in fam.items() if k != "per_example"}
                         for name, fam in report["families"].items()}}
        write_results("audit", payload, command=COMMAND)
    else:
        print("A piece: results are written by the full run (every method, 16 models); its cached runs are reused.")


if __name__ == "__main__":
    main()
