"""``hf-unlearn audit``: the per-example audit on the embedded digits data with the demo's small CNN recipe.

N small CNNs retrained without a random forget set and N unlearning runs per method from one original, each
scored example by example against the retrained ones (``hf_unlearn.audit.run_audit``); every run is cached,
so a rerun with more models or methods trains only what is missing. With the demo's recipe one training takes
about 10 s on two CPU threads: 16 models a side and one method take a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
from dataclasses import asdict, replace
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForImageClassification

from .. import models  # noqa: F401  (registers the small CNN with the Auto classes)
from ..audit import CEILING, DO_NOTHING, run_audit
from ..data.builtin import load_digits_dataset
from ..data.forget import random_indices
from ..evaluation.tables import markdown_table
from ..exact import TrainingRecipe, train_classifier
from ..methods import DEFAULT_PATH, METHODS
from ..models import SmallCNNConfig


def digits_trainer(recipe: TrainingRecipe, scratch: Path):
    """``(dataset, seed) -> model``: the demo's small CNN trained with ``recipe`` (its seed replaced), quietly."""

    def train(dataset, seed: int):
        torch.manual_seed(seed)
        model = AutoModelForImageClassification.from_config(SmallCNNConfig(num_labels=10))
        with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints its closing metrics
            train_classifier(model, dataset, replace(recipe, seed=seed), output_dir=str(scratch))
        return model

    return train


def _summary(report: dict) -> str:
    rows = [[name, f"{f['forget_score']:.3f}", f"{f['final_score']:.3f}",
             f"{f['ulira']['auc']:.3f}" if f["ulira"] else "", f"{f['seconds_per_run']:.2f}"]
            for name, f in report["families"].items()]
    return markdown_table(["family", "forget score", "final score", "U-LiRA AUC", "s / run"], rows)


def parse_methods(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    known = {DEFAULT_PATH, DO_NOTHING, *METHODS}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown methods {unknown}: choose from {', '.join(sorted(known))} "
                                         f"(comma-separated; '{DO_NOTHING}' does nothing)")
    return names


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="hf-unlearn audit",
        description="Audit unlearning methods on digits: N retrained and N unlearned small CNNs per method, "
                    "scored per forget example (challenge score, U-LiRA). Runs are cached in OUTPUT_DIR.")
    parser.add_argument("--num_models", type=int, default=16, help="models a side (retrains; runs per method)")
    parser.add_argument("--methods", type=parse_methods, default=[DO_NOTHING, DEFAULT_PATH],
                        help=f"comma-separated methods (default: {DO_NOTHING},{DEFAULT_PATH}); "
                             f"'{DO_NOTHING}' is the original left as it is")
    parser.add_argument("--ceiling", action="store_true",
                        help="also N more retrains scored against the first N: the best score N models allow")
    parser.add_argument("--forget_fraction", type=float, default=0.1, help="share of the training rows forgotten")
    parser.add_argument("--forget_seed", type=int, default=0, help="which random rows are forgotten")
    parser.add_argument("--seed", type=int, default=0, help="the original model's seed")
    parser.add_argument("--num_train_epochs", type=float, default=TrainingRecipe.num_train_epochs,
                        help="epochs of every training (the demo's recipe: 40)")
    parser.add_argument("--output_dir", default="outputs/audit")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if not 0 < args.forget_fraction < 1:
        parser.error(f"--forget_fraction must be between 0 and 1, got {args.forget_fraction}")
    if args.num_models < 3:
        parser.error(f"--num_models must be at least 3 (16 or more is usual), got {args.num_models}")
    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_unlearn").setLevel(logging.WARNING)
    data = load_digits_dataset(test_size=0.2, validation_size=0.1, seed=0).with_format("torch")
    train = data["train"]
    recipe = TrainingRecipe(num_train_epochs=args.num_train_epochs, seed=args.seed)
    out = Path(args.output_dir)
    report = run_audit(
        digits_trainer(recipe, out / "scratch"), train, random_indices(len(train), args.forget_fraction,
                                                                       args.forget_seed),
        data["test"], output_dir=out, methods=args.methods, num_models=args.num_models,
        eval_dataset=data["validation"], ceiling=args.ceiling, original_seed=args.seed,
        recipe_key=json.dumps({"model": "digits small CNN", **asdict(recipe)}, sort_keys=True),
        progress=not args.no_progress)
    print("\n" + _summary(report))
    best = f" (the ceiling, '{CEILING}', is the best N models allow)" if args.ceiling else \
        " (--ceiling adds what two sets of retrained models score against each other)"
    print(f"\nHigher forget score is better, U-LiRA AUC 0.5 is best{best}.\nFull report: {out / 'report.md'}")
    return report
