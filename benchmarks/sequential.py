"""How fidelity drifts while one model serves N deletion requests in turn, against retraining.

    .venv/bin/python -m benchmarks.sequential                       # ResNet on MNIST-5k, 10 requests, seed 0
    .venv/bin/python -m benchmarks.sequential --requests 5 --methods pgu_retain finetune

Uses the fidelity suite's cached original (HF ResNet with BatchNorm, plain Trainer, MNIST-5k) and its
Core Gradient Space. The requests are the ``mnist_resnet_random`` scenario's forget set (350 rows) cut
into N equal random parts, served by :class:`hf_unlearn.sequential.SequentialUnlearning` with library
defaults. After request k the model is compared with a model retrained without every row removed so
far (the scenario's recipe, cached per removed set): Avg. Gap over UA / RA / TA / MIA, beside "do
nothing" (the original against the same reference). Writes ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import statistics
from pathlib import Path

import torch
import transformers
from transformers import default_data_collator

from hf_unlearn import UnlearningArguments
from hf_unlearn.evaluation import avg_gap, evaluate_unlearning
from hf_unlearn.evaluation.tables import markdown_table
from hf_unlearn.exact import retrain_from_scratch
from hf_unlearn.methods import METHODS as REGISTRY
from hf_unlearn.sequential import SequentialUnlearning

from .fidelity.run import _cached_original
from .fidelity.scenarios import SCENARIOS, forget_indices, load_data
from .results_io import table as results_table
from .results_io import table_from_markdown, write_results


class Comparison:
    """Evaluation against a model retrained without the rows removed so far (one retraining per removed set)."""

    def __init__(self, scenario, original, data, seed: int, cache: Path):
        self.scenario, self.original, self.data, self.seed, self.cache = scenario, original, data, seed, cache
        self._references: dict[str, tuple] = {}

    def reference(self, removed: list[int]):
        key = hashlib.sha256(json.dumps(removed).encode()).hexdigest()[:12]
        if key not in self._references:
            kept = sorted(set(range(len(self.data["train"]))) - set(removed))
            recipe = dataclasses.replace(self.scenario.recipe, seed=self.seed)
            model, seconds, _ = retrain_from_scratch(
                self.original.config, self.data["train"].select(kept), recipe, cache_dir=self.cache,
                data_collator=default_data_collator,
            )
            row = self.evaluate(model, model, removed)
            nothing = self.evaluate(self.original, model, removed)
            self._references[key] = (model, seconds, row, nothing)
        return self._references[key]

    def evaluate(self, model, reference, removed: list[int]) -> dict:
        train = self.data["train"]
        kept = sorted(set(range(len(train))) - set(removed))
        return evaluate_unlearning(
            model, train.select(removed), train.select(kept), self.data["test"], collate_fn=default_data_collator,
            reference_model=reference, retain_eval_samples=1000, seed=self.seed,
        )

    def __call__(self, model, removed: list[int]) -> dict:
        if not removed:
            return {"gap": 0.0, "do_nothing_gap": 0.0}
        reference, seconds, reference_row, nothing = self.reference(removed)
        row = self.evaluate(model, reference, removed)
        return {**{k: row[k] for k in ("UA", "RA", "TA", "MIA")}, "gap": avg_gap(row, reference_row),
                "do_nothing_gap": avg_gap(nothing, reference_row), "retrain_s": seconds}


def run(method: str, requests: list[list[int]], comparison: Comparison, space, out: Path, seed: int) -> list[dict]:
    args = UnlearningArguments(output_dir=str(out / method), method=method, report_to="none", disable_tqdm=True,
                               seed=seed, use_cpu=True, logging_strategy="no")
    projects = REGISTRY[method].uses_projection
    queue = SequentialUnlearning(
        comparison.original, args, comparison.data["train"], eval_dataset=comparison.data["validation"],
        core_gradient_space=space if projects else None, evaluate=comparison,
    )
    records = queue.serve(requests)
    for record in records:
        m = record["metrics"]
        print(f"  {method} request {record['request']}: gap {m['gap']:.2f} (do nothing {m['do_nothing_gap']:.2f}), "
              f"{record['seconds']:.1f} s, {record['outcome']}", flush=True)
    return records


def table(method: str, records: list[dict]) -> str:
    rows = []
    for r in records:
        m = r["metrics"]
        rows.append([r["request"], r["removed_so_far"], f"{m['gap']:.2f}", f"{m['do_nothing_gap']:.2f}",
                     f"{m['UA']:.1f}", f"{m['RA']:.1f}", f"{m['TA']:.1f}", f"{m['MIA']:.1f}",
                     f"{r['seconds']:.1f}", f"{r['seconds'] / m['retrain_s']:.2f}", "yes" if r["unlearned"] else "NO",
                     len(r["utility_warnings"])])
    rows = [[str(v) for v in row] for row in rows]
    head = ["request", "removed so far", "Avg. Gap", "do nothing", "UA", "RA", "TA", "MIA", "time s",
            "÷ retrain", "unlearned", "warnings"]
    return f"### {method}\n\n" + markdown_table(head, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="*", default=["pgu_retain", "pgu", "finetune", "neggrad_plus"])
    parser.add_argument("--out", default="outputs/sequential")
    args = parser.parse_args()
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    scenario = SCENARIOS["mnist_resnet_random"]
    data, _ = load_data(scenario.family)
    cache = Path("outputs/fidelity/cache")
    original, space, _ = _cached_original(cache, scenario, data, None, args.seed)
    rows = forget_indices(scenario, data["train"], args.seed)
    random.Random(args.seed).shuffle(rows)
    requests = [sorted(rows[i:: args.requests]) for i in range(args.requests)]
    print(f"{len(requests)} requests of ~{len(requests[0])} rows each ({len(rows)} in all)", flush=True)
    comparison = Comparison(scenario, original, data, args.seed, cache / "references")
    out = Path(args.out) / f"seed{args.seed}"
    results = {method: run(method, requests, comparison, space, out, args.seed) for method in args.methods}
    (out / "results.json").write_text(json.dumps(results, indent=2))
    summary = [f"Final request: {m} gap {r[-1]['metrics']['gap']:.2f}, median over requests "
               f"{statistics.median(x['metrics']['gap'] for x in r):.2f}" for m, r in results.items()]
    text = "\n\n".join([*(table(m, r) for m, r in results.items()), "\n".join(summary)])
    (out / "results.md").write_text(text + "\n")
    print(text)
    series = [[m, f"{r[-1]['metrics']['gap']:.2f}", str(sum(bool(x["unlearned"]) for x in r))]
              for m, r in results.items()]
    head = ["method", "final Avg. Gap", f"requests carried out (of {args.requests})"]
    tables = {"series": results_table(head, series, title=f"{args.requests} requests served in turn, seed {args.seed}")}
    tables.update({m: table_from_markdown(table(m, r)) for m, r in results.items()})
    write_results("sequential", {"tables": tables})


if __name__ == "__main__":
    main()
