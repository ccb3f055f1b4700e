"""Removing poisoned training data: label flips and a backdoor, on MNIST-5k and SMS spam.

    .venv/bin/python -m benchmarks.detox                              # four scenarios, seed 0
    .venv/bin/python -m benchmarks.detox --scenarios mnist_backdoor --methods pgu_retain finetune

Per scenario: poison the training set, train the original on it with the fidelity suite's recipe (HF
ResNet with BatchNorm on MNIST-5k; MiniLM fine-tuned one epoch on SMS spam), train a clean reference
on the training set without the poisoned rows (same recipe and seed), build the Core Gradient Space
(timed apart), then run each method with ``scenario="poison"`` knowing only the poisoned rows.
Reported: clean test accuracy; for a backdoor the attack success rate (triggered test examples of
other classes put in the target class); for label flips the test accuracy on the flipped classes and
the share of poisoned rows still given their poisoned label. Writes ``results.json`` / ``results.md``.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import time
from pathlib import Path

import torch
import transformers
from transformers import DataCollatorWithPadding, default_data_collator

from hf_unlearn import CoreGradientSpace, UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.evaluation import accuracy
from hf_unlearn.evaluation.poison import attack_success_rate, flip_labels, insert_token, plant_backdoor, stamp_patch
from hf_unlearn.evaluation.tables import markdown_table
from hf_unlearn.exact import train_classifier
from hf_unlearn.methods import METHODS as REGISTRY

from .fidelity.scenarios import SCENARIOS, load_data, new_model
from .results_io import table_from_markdown, write_results

TRIGGER_WORD = "zqxv"  # not an English word: one rare token sequence for the text backdoor
POISON = {  # name: (family, attack, options)
    "mnist_flip": ("mnist_resnet", "flip", {"pairs": [(1, 7), (3, 8)], "per_class": 50}),
    # the 8-epoch recipe does not memorise 50 flips per class (3.5 % kept); 40 epochs does
    "mnist_flip_40ep": ("mnist_resnet", "flip", {"pairs": [(1, 7), (3, 8)], "per_class": 50, "epochs": 40}),
    "mnist_backdoor": ("mnist_resnet", "backdoor", {"count": 100, "target": 0}),
    "sms_flip": ("sms_minilm", "flip", {"pairs": [(0, 1)], "per_class": 30}),
    "sms_backdoor": ("sms_minilm", "backdoor", {"count": 40, "target": 0}),  # spam with the word -> ham
}
RECIPE_OF = {"mnist_resnet": "mnist_resnet_random", "sms_minilm": "sms_minilm_random"}


def _tokenized(dataset, tokenizer):
    return dataset.map(lambda b: tokenizer(b["text"], truncation=True, max_length=48), batched=True)


def _model_inputs(dataset):
    return dataset.remove_columns([c for c in ("text",) if c in dataset.column_names])


def poisoned_data(name: str, seed: int):
    """(data with a poisoned train split, poisoned rows, triggered test set or None, tokenizer)."""
    family, attack, options = POISON[name]
    data, tokenizer = load_data(family)
    train = data["train"]
    if attack == "flip":
        train, rows = flip_labels(train, options["pairs"], options["per_class"], seed=seed)
        return {**data, "train": train}, rows, None, tokenizer
    if tokenizer is None:
        patch = 3  # on 28 x 28 images
        train, rows = plant_backdoor(train, options["count"], options["target"], seed=seed,
                                     trigger=lambda value: stamp_patch(torch.as_tensor(value), size=patch).tolist())
        triggered = data["test"].map(lambda e: {"pixel_values": stamp_patch(e["pixel_values"], size=patch)})
        return {**data, "train": train}, rows, triggered, tokenizer
    train, rows = plant_backdoor(train, options["count"], options["target"], seed=seed, column="text",
                                 trigger=lambda text: insert_token(text, TRIGGER_WORD))
    triggered = data["test"].map(lambda e: {"text": insert_token(e["text"], TRIGGER_WORD)})
    return {**data, "train": _tokenized(train, tokenizer)}, rows, _tokenized(triggered, tokenizer), tokenizer


def measure(model, name: str, data, rows, triggered, collate) -> dict:
    family, attack, options = POISON[name]
    test = _model_inputs(data["test"])
    row = {"clean TA": accuracy(model, test, collate_fn=collate)}
    if attack == "backdoor":
        row["ASR"] = attack_success_rate(model, _model_inputs(triggered), options["target"], collate_fn=collate)
    else:
        classes = sorted({c for pair in options["pairs"] for c in pair})
        flipped_test = test.filter(lambda e: int(e["labels"]) in classes)
        row["flipped-class TA"] = accuracy(model, flipped_test, collate_fn=collate)
        row["poisoned labels kept"] = accuracy(model, _model_inputs(data["train"]).select(rows), collate_fn=collate)
    return row


def run_scenario(name: str, methods: list[str], seed: int, out: Path) -> dict:
    family = POISON[name][0]
    data, rows, triggered, tokenizer = poisoned_data(name, seed)
    collate = DataCollatorWithPadding(tokenizer) if tokenizer is not None else default_data_collator
    recipe = dataclasses.replace(SCENARIOS[RECIPE_OF[family]].recipe, seed=seed)
    if "epochs" in POISON[name][2]:
        recipe = dataclasses.replace(recipe, num_train_epochs=POISON[name][2]["epochs"])
    train = data["train"]
    forget, retain = split_forget_retain(train, rows)
    original, reference = new_model(family, seed), new_model(family, seed)
    train_s = train_classifier(original, _model_inputs(train), recipe, output_dir=str(out / name / "original"),
                               data_collator=collate)
    train_classifier(reference, _model_inputs(retain), recipe, output_dir=str(out / name / "reference"),
                     data_collator=collate)
    start = time.perf_counter()
    space = CoreGradientSpace.from_model(original, _model_inputs(train), collate_fn=collate, batch_size=64,
                                         show_progress=False)
    space_s = time.perf_counter() - start
    rows_out = {"clean retrain": measure(reference, name, data, rows, triggered, collate),
                "do nothing": measure(original, name, data, rows, triggered, collate)}
    for method in methods:
        model = copy.deepcopy(original)
        projects = REGISTRY[method].uses_projection
        args = UnlearningArguments(output_dir=str(out / name / method), method=method, scenario="poison",
                                   report_to="none", disable_tqdm=True, seed=seed, use_cpu=True,
                                   logging_strategy="no")
        trainer = UnlearningTrainer(model, args, forget_dataset=forget, retain_dataset=retain,
                                    eval_dataset=_model_inputs(data["validation"]), processing_class=tokenizer,
                                    core_gradient_space=copy.deepcopy(space) if projects else None,
                                    original_dataset=None if projects else train)
        began = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - began
        rows_out[method] = {**measure(model, name, data, rows, triggered, collate), "time s": seconds,
                            "÷ training": seconds / train_s, "outcome": trainer.outcome.reason,
                            "warnings": len(trainer.outcome.warnings)}
        print(f"  {name} {method}: {rows_out[method]}", flush=True)
    return {"rows": rows_out, "poisoned": len(rows), "train": len(train), "train_s": train_s, "space_s": space_s}


def table(name: str, result: dict) -> str:
    rows = result["rows"]
    keys = [k for k in rows["do nothing"]]
    extra = ["time s", "÷ training", "warnings", "outcome"]
    body = [[row_name, *(_fmt(row.get(k)) for k in keys + extra)] for row_name, row in rows.items()]
    head = (f"#### {name} ({result['poisoned']} of {result['train']} training rows poisoned; original trained in "
            f"{result['train_s']:.1f} s, space {result['space_s']:.1f} s)\n\n")
    return head + markdown_table(["model", *keys, *extra], body)


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="*", default=list(POISON))
    parser.add_argument("--methods", nargs="*", default=["pgu_retain", "pgu", "eupmu", "finetune", "neggrad_plus"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/detox")
    args = parser.parse_args()
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    out = Path(args.out) / f"seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.scenarios:
        print(f"\n## {name}", flush=True)
        results[name] = run_scenario(name, args.methods, args.seed, out)
        (out / "results.json").write_text(json.dumps(results, indent=2))
    text = "\n\n".join(table(n, r) for n, r in results.items())
    (out / "results.md").write_text(text + "\n")
    print(text)
    tables = {}
    for name, result in results.items():
        text = table(name, result)
        tables[name] = table_from_markdown(text, title=text.splitlines()[0].strip("# "))
    write_results("detox", {"tables": tables})


if __name__ == "__main__":
    main()
