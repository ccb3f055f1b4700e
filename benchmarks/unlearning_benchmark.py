"""Every registered method, with its library defaults, against retraining from scratch.

    .venv/bin/python benchmarks/unlearning_benchmark.py                       # all scenarios, 3 seeds
    .venv/bin/python benchmarks/unlearning_benchmark.py --scenarios digits_random --seeds 0 --methods pgu eupmu

Scenarios: digits 10 % random, digits one class (3), MNIST-5k 10 % random. Per seed the original
model is trained with the recipe (cached), its Core Gradient Space built once (cached), the
retrained reference trained without the forget set (cached by config, retain fingerprints and
recipe), then each method runs from a fresh copy of the original with the same defaults in every
scenario: nothing is tuned against the retrained model. Prints mean ± std per metric, the Avg. Gap
to retraining and the speed-up over it, and writes results.json and results.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path

import torch
import transformers
from results_io import table_from_markdown, write_results
from tqdm.auto import tqdm
from transformers import AutoModelForImageClassification

import hf_unlearn.models  # noqa: F401  (registers the small CNN)
from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.core import CoreGradientSpace
from hf_unlearn.data.builtin import load_digits_dataset, load_mnist5k_dataset
from hf_unlearn.data.forget import indices_of_classes, random_indices, split_forget_retain
from hf_unlearn.evaluation import avg_gap, evaluate_unlearning
from hf_unlearn.exact import TrainingRecipe, retrain_from_scratch, train_classifier
from hf_unlearn.methods import METHODS
from hf_unlearn.models import SmallCNNConfig

DIGITS_MODEL = dict(image_size=8)
MNIST_MODEL = dict(image_size=28, conv_channels=(16, 32, 32))  # 28→14→7: a 1568-d input to the hidden layer
SCENARIOS = {
    "digits_random": dict(loader=load_digits_dataset, model=DIGITS_MODEL, forget=("random", 0.1)),
    "digits_class": dict(loader=load_digits_dataset, model=DIGITS_MODEL, forget=("class", 3)),
    "mnist5k_random": dict(loader=load_mnist5k_dataset, model=MNIST_MODEL, forget=("random", 0.1)),
}
METRICS = ("UA", "RA", "TA", "MIA")


def original_and_space(cache: Path, scenario: str, seed: int, train, model_kwargs: dict, recipe: TrainingRecipe):
    path = cache / f"{scenario}-original-seed{seed}"
    if (path / "core_gradient_space" / "cgs_config.json").is_file():
        return AutoModelForImageClassification.from_pretrained(path), CoreGradientSpace.from_pretrained(
            path / "core_gradient_space"
        )
    torch.manual_seed(seed)
    model = AutoModelForImageClassification.from_config(SmallCNNConfig(**model_kwargs))
    train_classifier(model, train, recipe, output_dir=str(path / "run"))
    model.save_pretrained(path)
    space = CoreGradientSpace.from_model(model, train, batch_size=256, show_progress=False)
    space.save_pretrained(path / "core_gradient_space")
    return model, space


def run_method(method: str, original, space, forget, retain, validation, out: Path, seed: int):
    model = copy.deepcopy(original)
    args = UnlearningArguments(
        output_dir=str(out), method=method, seed=seed, disable_tqdm=True, logging_strategy="no", report_to="none"
    )
    start = time.perf_counter()
    trainer = UnlearningTrainer(
        model=model,
        args=args,
        forget_dataset=forget,
        retain_dataset=retain,
        eval_dataset=validation,
        core_gradient_space=copy.deepcopy(space),
    )
    trainer.train()
    return model, time.perf_counter() - start


def run(scenarios, seeds, methods, output_dir: Path) -> dict:
    transformers.logging.set_verbosity_error()
    cache = output_dir / "cache"
    results: dict = {}
    jobs = [(s, seed) for s in scenarios for seed in seeds]
    progress = tqdm(total=len(jobs) * (len(methods) + 1), desc="benchmark")
    for scenario, seed in jobs:
        spec = SCENARIOS[scenario]
        data = spec["loader"](test_size=0.2, validation_size=0.1, seed=0).with_format("torch")
        train, test, validation = data["train"], data["test"], data["validation"]
        recipe = TrainingRecipe(seed=seed)
        original, space = original_and_space(cache, scenario, seed, train, spec["model"], recipe)
        kind, value = spec["forget"]
        indices = random_indices(len(train), value, seed) if kind == "random" else indices_of_classes(train, [value])
        forget, retain = split_forget_retain(train, indices)
        progress.set_postfix_str(f"{scenario} seed {seed}: retrain")
        retrained, retrain_s, _ = retrain_from_scratch(original.config, retain, recipe, cache_dir=cache)
        rows = {"retrain": evaluate_unlearning(retrained, forget, retain, test, seed=seed, run_time=retrain_s)}
        progress.update()
        for method in methods:
            progress.set_postfix_str(f"{scenario} seed {seed}: {method}")
            model, seconds = run_method(
                method,
                original,
                space,
                forget,
                retain,
                validation,
                output_dir / "runs" / f"{scenario}-{seed}-{method}",
                seed,
            )
            rows[method] = evaluate_unlearning(
                model, forget, retain, test, reference_model=retrained, seed=seed, run_time=seconds
            )
            rows[method]["gap"] = avg_gap(rows[method], rows["retrain"])
            rows[method]["speedup"] = retrain_s / seconds
            tqdm.write(
                f"{scenario} seed {seed} {method:>16}: "
                + " ".join(f"{k}={rows[method][k]:.2f}" for k in (*METRICS, "gap", "time", "speedup"))
            )
            progress.update()
        results.setdefault(scenario, {})[seed] = rows
    progress.close()
    return results


def _mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def summarise(results: dict, methods: list[str]) -> str:
    lines = []
    for scenario, by_seed in results.items():
        seeds = sorted(by_seed)
        lines += [
            f"\n### {scenario} ({len(seeds)} seed{'s' if len(seeds) > 1 else ''})\n",
            "| method | UA | RA | TA | MIA | Avg. Gap ↓ | time (s) | speed-up |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for method in ("retrain", *methods):
            rows = [by_seed[s][method] for s in seeds]
            cells = [_mean_std([r[k] for r in rows]) for k in METRICS]
            gap = _mean_std([r["gap"] for r in rows]) if method != "retrain" else "0"
            speed = _mean_std([r["speedup"] for r in rows]) + "×" if method != "retrain" else "1×"
            lines.append(
                f"| {method} | " + " | ".join(cells) + f" | {gap} | {_mean_std([r['time'] for r in rows])} | {speed} |"
            )
        best = min(methods, key=lambda m: statistics.mean(by_seed[s][m]["gap"] for s in seeds))
        lines.append(f"\nLowest Avg. Gap: **{best}**")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=[m for m in METHODS if m != "retrain"])
    parser.add_argument("--output_dir", default="outputs/benchmark")
    args = parser.parse_args()
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        parser.error(f"unknown methods {unknown}; registered: {sorted(METHODS)}")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    results = run(args.scenarios, args.seeds, args.methods, out)
    table = summarise(results, args.methods)
    print(table)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    (out / "results.md").write_text(table + "\n")
    sections = [s for s in table.split("### ")[1:] if "|" in s]
    write_results("unlearning_benchmark", {"tables": {
        s.split()[0]: table_from_markdown(s, title=s.splitlines()[0]) for s in sections}})


if __name__ == "__main__":
    main()
