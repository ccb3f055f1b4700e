"""The main job on embedded data: forget part of sklearn's digits with PGU and compare with retraining.

Steps: train the original small CNN once (cached), build its Core Gradient Space once (cached),
then for (a) 10 % random examples and (b) one whole class: retrain from scratch without them (the
reference, timed in this run), unlearn with PGU using the library defaults, and print one table.
Every unlearned checkpoint is saved with its space, ledger and a report.
"""

from __future__ import annotations

import argparse
import copy
import logging
import time
from dataclasses import asdict
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForImageClassification

from .. import models  # noqa: F401  (registers the small CNN with the Auto classes)
from ..core import CoreGradientSpace
from ..core.fingerprint import digest
from ..data.builtin import load_digits_dataset
from ..data.forget import indices_of_classes, random_indices, split_forget_retain
from ..evaluation import evaluate_unlearning, per_example_loss, write_report
from ..evaluation.tables import markdown_table
from ..exact import TrainingRecipe, retrain_from_scratch, train_classifier
from ..models import SmallCNNConfig
from ..training.arguments import UnlearningArguments
from ..training.trainer import UnlearningTrainer

MIA_DRAWS = 10  # one attacker draw can read the same model anywhere from ~2 to 100 % (docs/evaluation.md)
COLUMNS = ("forget acc", "retain acc", "test acc", "MIA", "time (s)", "speed-up")


def _recipe_key(recipe: TrainingRecipe, config: SmallCNNConfig, seed: int) -> str:
    return digest({"recipe": asdict(recipe), "config": config.to_dict(), "seed": seed}, length=12)


def original_model(output_dir: Path, train, recipe: TrainingRecipe, seed: int):
    """Train (or load the cached) original model and its Core Gradient Space."""
    config = SmallCNNConfig(num_labels=10)
    path, key = output_dir / "original", _recipe_key(recipe, config, seed)
    stamp = path / "recipe_key.txt"
    if stamp.is_file() and stamp.read_text() == key and (path / "core_gradient_space").is_dir():
        print(f"Original model and its Core Gradient Space: cached in {path}")
        return AutoModelForImageClassification.from_pretrained(path), path
    torch.manual_seed(seed)
    model = AutoModelForImageClassification.from_config(config)
    seconds = train_classifier(model, train, recipe, output_dir=str(path / "run"))
    model.save_pretrained(path)
    start = time.perf_counter()
    space = CoreGradientSpace.from_model(model, train, batch_size=256, desc="Core Gradient Space")
    space.save_pretrained(path / "core_gradient_space")
    stamp.write_text(key)
    print(f"Trained the original model in {seconds:.1f}s; built its Core Gradient Space once in "
          f"{time.perf_counter() - start:.2f}s ({len(space.layers)} layers) -> {path}")
    return model, path


def run_scenario(name: str, indices, original, original_path: Path, data, recipe, out: Path, seed: int) -> dict:
    train, test, validation = data["train"], data["test"], data["validation"]
    forget, retain = split_forget_retain(train, indices)
    print(f"\n[{name}] forget {len(forget)} / retain {len(retain)} examples: retraining from scratch ...")
    retrained, retrain_seconds, _ = retrain_from_scratch(original.config, retain, recipe)

    print(f"[{name}] unlearning with PGU (library defaults) ...")
    model = copy.deepcopy(original)
    start = time.perf_counter()
    space = CoreGradientSpace.from_pretrained(original_path / "core_gradient_space", model)
    args = UnlearningArguments(
        output_dir=str(out / "pgu"), method="pgu", seed=seed, disable_tqdm=True, logging_strategy="no"
    )
    trainer = UnlearningTrainer(
        model=model, args=args, forget_dataset=forget, retain_dataset=retain, eval_dataset=validation,
        core_gradient_space=space,
    )
    trainer.train()
    pgu_seconds = time.perf_counter() - start
    trainer.save_model()

    results, losses = {}, {}
    for label, candidate, seconds in (("original", original, None), ("retrain", retrained, retrain_seconds),
                                      ("pgu", model, pgu_seconds)):
        # class removal: TA on the kept classes (the report and card say so)
        results[label] = evaluate_unlearning(candidate, forget, retain, test, reference_model=retrained, seed=seed,
                                             run_time=seconds, mia_draws=MIA_DRAWS,
                                             forgotten_classes=trainer.forgotten_classes)
    losses["forget (pgu)"] = per_example_loss(model, forget)
    losses["test (pgu)"] = per_example_loss(model, test)
    losses["forget (retrain)"] = per_example_loss(retrained, forget)
    write_report(results, out, loss_histograms=losses, title=f"PGU on digits: {name}")
    return {"name": name, "scenario": trainer.scenario, "results": results, "epochs": trainer.state.epoch}


def _table(summary: list[dict]) -> str:
    rows = []
    for block in summary:
        retrain_time = block["results"]["retrain"]["time"]
        for label, m in block["results"].items():
            time_s = m.get("time")
            speed = f"{retrain_time / time_s:.1f}x" if time_s and label == "pgu" else ""
            cells = [f"{100 - m['UA']:.1f}", f"{m['RA']:.1f}", f"{m['TA']:.1f}", f"{m['MIA']:.1f}",
                     f"{time_s:.2f}" if time_s else "", speed]
            rows.append([block["name"], label, *cells])
    return markdown_table(["scenario", "model", *COLUMNS], rows)


def _bars(summary: list[dict]) -> list[str]:
    """The demo's acceptance bars, checked on this run's numbers."""
    checks = []
    for block in summary:
        r, p = block["results"]["retrain"], block["results"]["pgu"]
        if block["scenario"] == "class":
            checks.append((f"{block['name']}: PGU forget accuracy <= 5%", 100 - p["UA"] <= 5))
            checks.append((f"{block['name']}: PGU kept-class test acc within 3 pts of retrain",
                           abs(p["TA"] - r["TA"]) <= 3))
        else:
            checks.append((f"{block['name']}: |forget acc - retrain| <= 3", abs(p["UA"] - r["UA"]) <= 3))
            checks.append((f"{block['name']}: |test acc - retrain| <= 3", abs(p["TA"] - r["TA"]) <= 3))
        checks.append((f"{block['name']}: PGU time <= 1/10 of retraining", p["time"] * 10 <= r["time"]))
    return [f"[{'PASS' if ok else 'FAIL'}] {text}" for text, ok in checks]


def run_demo(output_dir: str = "outputs/demo", forget_class: int = 3, forget_fraction: float = 0.1,
             seed: int = 0) -> list[dict]:
    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_unlearn").setLevel(logging.WARNING)
    out = Path(output_dir)
    data = load_digits_dataset(test_size=0.2, validation_size=0.1, seed=seed)
    data = data.with_format("torch")
    recipe = TrainingRecipe(seed=seed)
    original, original_path = original_model(out, data["train"], recipe, seed)
    scenarios = [
        (f"{forget_fraction:.0%} random", random_indices(len(data["train"]), forget_fraction, seed), "random"),
        (f"class {forget_class}", indices_of_classes(data["train"], [forget_class]), f"class{forget_class}"),
    ]
    summary = [run_scenario(name, idx, original, original_path, data, recipe, out / slug, seed)
               for name, idx, slug in scenarios]
    table = _table(summary)
    bars = _bars(summary)
    text = (f"{table}\n\nforget/retain/test acc in %, MIA = MIA-efficacy (%, mean of {MIA_DRAWS} attacker draws); "
            "class rows: test acc on kept classes.\n\n" + "\n".join(bars))
    print("\n" + text)
    (out / "summary.md").write_text(text + "\n")
    print(f"\nUnlearned checkpoints, spaces and reports: {out}/<scenario>/pgu and {out}/<scenario>/report.md")
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="PGU on sklearn digits vs retraining from scratch.")
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--forget_class", type=int, default=3)
    parser.add_argument("--forget_fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    run_demo(args.output_dir, args.forget_class, args.forget_fraction, args.seed)
