"""A quick sweep of the default path's settings on one fidelity scenario and seed: full-set UA / RA / TA.

    .venv/bin/python -m benchmarks.fidelity.sweep animal_resnet_random 0 '[{}, {"gamma": 0.95}]' \
        --cache outputs/fidelity_mem_cache

Each JSON object is a set of ``UnlearningArguments`` (``method_kwargs`` for the method's own) for one run of
the default path from the cached original and space; the two references come from the same cache as the
suite's (trained there when missing). No MIA and no Avg. Gap: a screen for the suite, not a replacement.
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
from transformers import default_data_collator

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.evaluation import retain_accuracy
from hf_unlearn.exact import retrain_from_scratch

from .run import _cached_original
from .scenarios import ALL_SCENARIOS, forget_indices, load_data


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenario", choices=sorted(ALL_SCENARIOS))
    parser.add_argument("seed", type=int)
    parser.add_argument("settings", help="JSON list of UnlearningArguments dicts, one run each")
    parser.add_argument("--cache", default="outputs/fidelity_mem_cache")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    scenario, cache = ALL_SCENARIOS[args.scenario], Path(args.cache)
    if scenario.family.startswith("sms"):
        raise SystemExit("the sweep reads image scenarios only (no tokenizer or text collator)")
    data, _ = load_data(scenario.family)
    original, space, _ = _cached_original(cache, scenario, data, None, args.seed)
    forget, retain = split_forget_retain(data["train"], forget_indices(scenario, data["train"], args.seed))

    def row(model) -> list[float]:
        accuracy = [retain_accuracy(model, d, collate_fn=default_data_collator) for d in (forget, retain, data["test"])]
        return [round(100 - accuracy[0], 1), round(accuracy[1], 1), round(accuracy[2], 1)]

    for name, ref_seed in (("reference", args.seed), ("reference_2", args.seed + 100)):
        model, _, _ = retrain_from_scratch(original.config, retain, dataclasses.replace(scenario.recipe, seed=ref_seed),
                                           cache_dir=cache / "references", data_collator=default_data_collator)
        print(name, "UA/RA/TA", row(model), flush=True)
    print("do_nothing UA/RA/TA", row(original), flush=True)
    for settings in json.loads(args.settings):
        model = copy.deepcopy(original)
        run_args = UnlearningArguments(output_dir="outputs/fidelity_sweep", report_to="none", disable_tqdm=True,
                                       seed=args.seed, use_cpu=True, logging_strategy="no", **settings)
        trainer = UnlearningTrainer(model, run_args, forget_dataset=forget, retain_dataset=retain,
                                    eval_dataset=data["validation"], core_gradient_space=copy.deepcopy(space))
        start = time.perf_counter()
        trainer.train()
        seconds, outcome = time.perf_counter() - start, trainer.outcome
        print(json.dumps(settings), "UA/RA/TA", row(model), f"{seconds:.1f} s, {outcome.steps} steps, "
              f"{outcome.backtracks} backtracks, {outcome.cleared_alarms} alarms cleared: {outcome.reason}", flush=True)


if __name__ == "__main__":
    main()
