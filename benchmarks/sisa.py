"""SISA against one model: what sharding costs in accuracy, and what it saves per deletion.

    .venv/bin/python -m benchmarks.sisa                       # MNIST-5k ResNet and SMS spam MiniLM
    .venv/bin/python -m benchmarks.sisa --families mnist_resnet --shards 2 5

For each family (the fidelity suite's data and recipes: an HF ResNet from config on MNIST-5k, 8
epochs; pretrained MiniLM fine-tuned one epoch on 1000 SMS messages) it trains one model on all the
data (the baseline, and what full retraining costs), then for every k a SISA ensemble with
``--slices`` slices, and serves two requests: one random example, then ten. Wall times are measured
in the same run, side by side; deletion time is reported as a fraction of training the one model.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import DataCollatorWithPadding, default_data_collator

from hf_unlearn.evaluation import accuracy
from hf_unlearn.exact import SISAEnsemble, train_classifier

from .fidelity.scenarios import SCENARIOS, load_data, minilm_path, new_model
from .results_io import table_from_markdown, write_results

FAMILIES = {"mnist_resnet": "mnist_resnet_random", "sms_minilm": "sms_minilm_random"}


def _accuracy(predictions: torch.Tensor, dataset) -> float:
    return 100.0 * (predictions == torch.as_tensor(dataset[:]["labels"])).float().mean().item()


def run_family(family: str, shards: list[int], slices: int, seed: int, work: Path) -> list[dict]:
    data, tokenizer = load_data(family)
    collate = DataCollatorWithPadding(tokenizer) if tokenizer is not None else default_data_collator
    recipe = dataclasses.replace(SCENARIOS[FAMILIES[family]].recipe, seed=seed)
    base = minilm_path() if family == "sms_minilm" else None
    train, test = data["train"], data["test"].remove_columns([c for c in ("text",) if c in data["test"].column_names])
    print(f"{family}: one model on all {len(train)} examples", flush=True)
    single = new_model(family, seed)
    single_seconds = train_classifier(single, train, recipe, output_dir=str(work / "single"), data_collator=collate)
    rows = [
        {
            "family": family,
            "model": "one model (all data)",
            "test": accuracy(single, test, collate_fn=collate),
            "train_s": single_seconds,
        }
    ]
    rng = np.random.default_rng(seed)
    for k in shards:
        print(f"{family}: SISA k={k}, r={slices}", flush=True)
        template = new_model(family, seed)
        start = time.perf_counter()
        ensemble = SISAEnsemble.train(
            template.config,
            train,
            recipe,
            output_dir=work / f"k{k}",
            num_shards=k,
            num_slices=slices,
            base_model=base,
            model_class=type(template),
            data_collator=collate,
        )
        train_seconds = time.perf_counter() - start
        row = {
            "family": family,
            "model": f"SISA k={k}, r={slices}",
            "train_s": train_seconds,
            "test": _accuracy(ensemble.predict(test, "mean"), test),
            "test_vote": _accuracy(ensemble.predict(test, "vote"), test),
        }
        for size in (1, 10):
            forget = rng.choice(sorted(set(range(len(train))) - ensemble.deleted), size, replace=False).tolist()
            report = ensemble.unlearn(forget)
            row[f"delete{size}_s"] = report["seconds"]
            row[f"delete{size}_shards"] = len(report["shards_retrained"])
            row[f"delete{size}_stages"] = report["stages_retrained"]
        row["test_after"] = _accuracy(ensemble.predict(test, "mean"), test)
        rows.append(row)
        shutil.rmtree(work / f"k{k}", ignore_errors=True)
    for row in rows:
        row["single_train_s"] = single_seconds
    return rows


def table(rows: list[dict]) -> str:
    head = (
        "| family | model | test acc. (mean) | vote | after 11 deletions | training | delete 1 example "
        "(÷ retraining one model) | delete 10 (÷ retraining) |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        if "delete1_s" not in r:
            lines.append(f"| {r['family']} | {r['model']} | {r['test']:.1f} | | | {r['train_s']:.1f} s | | |")
            continue
        one, ten, base = r["delete1_s"], r["delete10_s"], r["single_train_s"]
        lines.append(
            f"| {r['family']} | {r['model']} | {r['test']:.1f} | {r['test_vote']:.1f} | {r['test_after']:.1f} | "
            f"{r['train_s']:.1f} s | {one:.1f} s ({one / base:.2f}; {r['delete1_stages']} stage(s)) | "
            f"{ten:.1f} s ({ten / base:.2f}; {r['delete10_shards']} shard(s), {r['delete10_stages']} stages) |"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--families", nargs="*", default=list(FAMILIES))
    parser.add_argument("--shards", nargs="*", type=int, default=[2, 5, 10])
    parser.add_argument("--slices", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    rows = []
    with tempfile.TemporaryDirectory(prefix="sisa_bench_") as work:
        for family in args.families:
            rows += run_family(family, args.shards, args.slices, args.seed, Path(work) / family)
    print(table(rows))
    title = (f"SISA ensembles (k shards, r = {args.slices} slices), seed {args.seed}; two requests in order: one "
             "random example, then ten")
    write_results("sisa", {"tables": {"ensembles": table_from_markdown(table(rows), title)}, "rows": rows})


if __name__ == "__main__":
    main()
