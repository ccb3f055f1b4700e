"""What a request costs against retraining, measured side by side: the default path and a retraining of the
original's recipe on the retain set, alternating in one process, each the median of ``--repeats`` runs.

    .venv/bin/python -m benchmarks.fidelity.cost                    # the memorization-regime scenarios, seed 0
    .venv/bin/python -m benchmarks.fidelity.cost --scenarios animal10k_resnet_random --repeats 5

The original and its space come from the suite's cache (built beforehand, as the bar says); every retraining
starts fresh (no cache). Unlearning is ``train()`` of the public API with the defaults, the repair of flipped kept
examples included. Writes ``benchmarks/results/fidelity_cost.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import tempfile
from pathlib import Path

import torch
import transformers
from transformers import DataCollatorWithPadding, default_data_collator

from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.evaluation.tables import markdown_table
from hf_unlearn.exact import retrain_from_scratch

from ..results_io import table, write_results
from . import run as suite
from .scenarios import ALL_SCENARIOS, forget_indices, is_minilm, load_data, minilm_path
from .variants import cache_of

JOBS = ("animal_resnet_random", "animal_resnet_random1", "animal_resnet_user", "animal_vit_random",
        "animal10k_resnet_random", "animal10k_resnet_random1", "trec_minilm_random")


def _measure(name: str, seed: int, repeats: int, folder: Path) -> list:
    scenario = ALL_SCENARIOS[name]
    data, tokenizer = load_data(scenario.family)
    original, space, _ = suite._cached_original(cache_of(name), scenario, data, tokenizer, seed)
    forget, retain = split_forget_retain(data["train"], forget_indices(scenario, data["train"], seed))
    collate = DataCollatorWithPadding(tokenizer) if tokenizer is not None else default_data_collator
    recipe = dataclasses.replace(scenario.recipe, seed=seed)
    unlearn, retrain, steps = [], [], []
    for repeat in range(repeats):
        print(f"{name} seed {seed}: repeat {repeat + 1} of {repeats}", flush=True)
        _, trainer, seconds = suite.unlearn_once(scenario, seed, "pgu_retain", (data, tokenizer), (original, space),
                                                 (forget, retain), folder / name)
        unlearn.append(seconds)
        steps.append(trainer.outcome.steps)
        _, seconds, _ = retrain_from_scratch(original.config, suite._strip_text(retain), recipe,
                                             data_collator=collate,
                                             base_model=minilm_path() if is_minilm(scenario.family) else None)
        retrain.append(seconds)
    u, r = statistics.median(unlearn), statistics.median(retrain)
    return [name, seed, len(forget), len(retain), f"{u:.2f}", f"{min(unlearn):.2f}-{max(unlearn):.2f}",
            f"{r:.1f}", f"{min(retrain):.1f}-{max(retrain):.1f}", f"{u / r:.3f}", statistics.median(steps)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", nargs="*", default=list(JOBS), choices=list(ALL_SCENARIOS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    logging.getLogger("hf_unlearn").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as folder:
        rows = [_measure(name, args.seed, args.repeats, Path(folder)) for name in args.scenarios]
    columns = ["scenario", "seed", "forget rows", "retain rows", "unlearn s (median)", "range", "retrain s (median)",
               "range", "unlearn ÷ retrain", "steps"]
    print(markdown_table(columns, rows))
    write_results("fidelity_cost", {"tables": {"side_by_side": table(
        columns, rows, title=f"The default path against retraining, alternating in one process (median of "
        f"{args.repeats} runs each, 2 threads)")}})


if __name__ == "__main__":
    main()
