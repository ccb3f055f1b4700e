"""A text request under the overshoot rule that reads both samples' error, beside the two-examples threshold.

    .venv/bin/python -m benchmarks.crossing_rule            # N = 1 000 rated sentences, 100 forget rows
    .venv/bin/python -m benchmarks.crossing_rule --n 3000

MiniLM fine-tuned as in ``benchmarks/scaling_text.py`` (3 epochs, one thread, the same data and forget rows), its
space built once; then the same 100-row request twice in one process, one after the other: with
``control.stop_rules.crossing_resolution`` (the library's rule) and with a threshold of two forget
examples' worth and at least 2 points, patched in. Per run: wall time, steps, outcome, accuracies.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hf_unlearn import CoreGradientSpace
from hf_unlearn.control import controller
from hf_unlearn.data.forget import random_indices, split_forget_retain
from hf_unlearn.exact import train_classifier
from hf_unlearn.exact.retrain import TrainingRecipe

from .fidelity.scenarios import minilm_path
from .results_io import table, write_results
from .scaling import request
from .scaling_text import FORGET_ROWS, _accuracy, base_model, load_sentences


def two_examples(metrics: dict[str, float], key: str, validation: float) -> float:
    count = metrics.get("forget_accuracy_count", 0) if key == "forget_accuracy" else 0
    return max(2.0, 200.0 / count if count else 0.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    data = load_sentences(args.n, tokenizer)
    train, test, validation = data["train"], data["test"], data["validation"]
    collate = DataCollatorWithPadding(tokenizer)
    rules = {"both samples' error (library)": controller.crossing_resolution, "two examples' worth": two_examples}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        model = base_model()
        recipe = TrainingRecipe(num_train_epochs=3, learning_rate=5e-5, per_device_train_batch_size=16)
        print(f"fine-tuning MiniLM on {len(train)} sentences", flush=True)
        train_classifier(model, train, recipe, output_dir=f"{tmp}/train", data_collator=collate)
        folder = Path(tmp) / "model"
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        CoreGradientSpace.from_model(model.eval(), train, processing_class=tokenizer,
                                     show_progress=False).save_pretrained(folder / "core_gradient_space")
        forget, retain = split_forget_retain(train, random_indices(len(train), FORGET_ROWS / len(train), seed=1))
        for label, rule in rules.items():
            controller.crossing_resolution = rule
            try:
                unlearned, result = request(folder, forget, retain, validation, f"{tmp}/{len(rows)}", False,
                                            model_class=AutoModelForSequenceClassification, tokenizer=tokenizer)
            finally:
                controller.crossing_resolution = rules["both samples' error (library)"]
            rows.append([label, f"{result['total']:.1f}", result["steps"], result["outcome"],
                         f"{_accuracy(unlearned, forget, collate):.1f}", f"{_accuracy(unlearned, test, collate):.1f}"])
            print(rows[-1], flush=True)
    title = (f"The same 100-row request on MiniLM fine-tuned on {len(train)} rated sentences (3 epochs), one "
             "process, one thread")
    head = ["overshoot threshold", "wall s", "steps", "outcome", "forget acc", "test acc"]
    write_results(f"crossing_rule_n{args.n}", {"tables": {"runs": table(head, rows, title=title)}})


if __name__ == "__main__":
    main()
