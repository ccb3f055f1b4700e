"""How much of a fidelity row's MIA-efficacy is the attacker's draw, not the model.

    .venv/bin/python -m benchmarks.mia_spread                       # SMS "call" request, seed 0
    .venv/bin/python -m benchmarks.mia_spread --scenario sms_minilm_random --eval-seeds 0 1 2 3 4 5 6 7 8 9

The suite's MIA-efficacy fits SalUn's attacker (an RBF SVC on the confidence of the true label)
on a seeded, balanced draw of retain and test examples and reports the share of forget examples
it calls non-members. This script fixes the models — the two references, the original ("do
nothing") and one run of the default path — and only varies that draw's seed, so whatever spread
it prints belongs to the measurement, not to the unlearning. Uses the suite's cache (originals and
references are trained once).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import statistics
from pathlib import Path

import torch
from transformers import DataCollatorWithPadding, default_data_collator

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.evaluation.metrics import mia_efficacy_from_outputs
from hf_unlearn.evaluation.predict import collect_outputs
from hf_unlearn.exact import retrain_from_scratch

from .fidelity.run import _cached_original, _strip_text
from .fidelity.scenarios import ALL_SCENARIOS, forget_indices, kept_test, load_data, minilm_path
from .results_io import table as results_table
from .results_io import write_results


def unlearned_copy(original, forget, retain, validation, tokenizer, method: str, seed: int, out: Path):
    model = copy.deepcopy(original)
    args = UnlearningArguments(
        output_dir=str(out), method=method, report_to="none", disable_tqdm=True, seed=seed, use_cpu=True,
        logging_strategy="no",
    )
    trainer = UnlearningTrainer(
        model, args, forget_dataset=forget, retain_dataset=retain, eval_dataset=validation, processing_class=tokenizer
    )
    trainer.train()
    return model, trainer.outcome.reason


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", default="sms_minilm_word")
    parser.add_argument("--seed", type=int, default=0, help="The scenario's seed (original, request, references).")
    parser.add_argument("--eval-seeds", nargs="*", type=int, default=list(range(10)))
    parser.add_argument("--method", default="pgu_retain")
    parser.add_argument("--cache", default="outputs/fid_masked/cache")
    parser.add_argument("--out", default="outputs/mia_spread")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenario, cache = ALL_SCENARIOS[args.scenario], Path(args.cache)
    data, tokenizer = load_data(scenario.family)
    original, _, _ = _cached_original(cache, scenario, data, tokenizer, args.seed)
    train = data["train"]
    forget, retain = split_forget_retain(train, forget_indices(scenario, train, args.seed))
    test = kept_test(scenario, _strip_text(data["test"]))
    text = tokenizer is not None
    collate = DataCollatorWithPadding(tokenizer) if text else default_data_collator
    models = {}
    for name, ref_seed in (("reference", args.seed), ("reference_2", args.seed + 100)):
        recipe = dataclasses.replace(scenario.recipe, seed=ref_seed)
        models[name] = retrain_from_scratch(
            original.config, _strip_text(retain), recipe, cache_dir=cache / "references", data_collator=collate,
            base_model=minilm_path() if text else None,
        )[0]
    models["do_nothing"] = original
    print(f"unlearning with {args.method} ...", flush=True)
    models[args.method], outcome = unlearned_copy(
        original, forget, retain, _strip_text(data["validation"]), tokenizer, args.method, args.seed,
        Path(args.out) / args.scenario,
    )
    print(f"  {outcome}", flush=True)
    print(f"\n{args.scenario}, seed {args.seed}: MIA-efficacy (%) of fixed models over attacker draws "
          f"{args.eval_seeds}\n")
    rows = []
    print("| model | UA | mean | min | max | per draw |\n|---|---|---|---|---|---|")
    for name, model in models.items():
        outputs = [
            collect_outputs(model.eval(), _strip_text(d), collate_fn=collate, batch_size=64)
            for d in (forget, retain, test)
        ]
        forget_out, retain_out, test_out = outputs
        ua = 100.0 * float((forget_out["logits"].argmax(-1) != forget_out["labels"]).float().mean())
        values = [mia_efficacy_from_outputs(retain_out, test_out, forget_out, seed=s) for s in args.eval_seeds]
        rows.append([name, f"{ua:.1f}", f"{statistics.fmean(values):.1f}", f"{min(values):.1f}", f"{max(values):.1f}",
                     " ".join(f"{v:.0f}" for v in values)])
        print("| " + " | ".join(rows[-1]) + " |", flush=True)
    title = f"MIA-efficacy (%) of fixed models over attacker draws {args.eval_seeds}: {args.scenario}, seed {args.seed}"
    write_results("mia_spread", {"tables": {f"{args.scenario}_seed{args.seed}": results_table(
        ["model", "UA", "mean", "min", "max", "per draw"], rows, title)}})


if __name__ == "__main__":
    main()
