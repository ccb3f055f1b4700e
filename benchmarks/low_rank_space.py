"""What a low-rank Core Gradient Space keeps on a real model, and what PGU does with it.

    .venv/bin/python -m benchmarks.low_rank_space                 # MiniLM on SMS spam, ranks 64 128 256 512

Uses the fidelity suite's cached seed-0 MiniLM (fine-tuned on SMS spam) and its space (padding masked).
Per stored rank r: the size, the largest dropped eigenvalue relative to each layer's top one (the bound
of docs/cgs.md §3b), how many layers the rank caps below the default γ, and a class-removal and a
random request with the default path on the compressed space beside the full one (forget, retain-sample
and test accuracy, seconds).
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch
import transformers

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain

from .fidelity.run import _cached_original, _strip_text
from .fidelity.scenarios import SCENARIOS, forget_indices, load_data
from .results_io import table_from_markdown, write_results


def describe(space, gamma: float, energy: str) -> dict:
    distinct = {id(g): g for g in space.grams.values()}.values()
    if not space.low_rank:
        return {"MB": space.nbytes() / 2**20, "dropped": 0.0, "capped": 0}
    dropped = max(g.dropped_bound / float(g.values[0]) for g in distinct)
    capped = sum(g.kept_share(energy) < gamma for g in distinct)
    return {"MB": space.nbytes() / 2**20, "dropped": dropped, "capped": capped}


def run(original, space, scenario_name: str, out: Path) -> dict:
    scenario = SCENARIOS[scenario_name]
    data, tokenizer = load_data(scenario.family)
    train = data["train"]
    forget, retain = split_forget_retain(train, forget_indices(scenario, train, 0))
    model = copy.deepcopy(original)
    args = UnlearningArguments(output_dir=str(out), report_to="none", disable_tqdm=True, seed=0, use_cpu=True,
                               logging_strategy="no")
    trainer = UnlearningTrainer(model, args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=_strip_text(data["validation"]), core_gradient_space=copy.deepcopy(space),
                                processing_class=tokenizer)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = trainer.unlearning_metrics()
    test = trainer.evaluate(_strip_text(data["test"]))
    return {"forget": metrics["eval_forget_accuracy"], "retain": metrics["eval_retain_accuracy"],
            "test": test.get("eval_test_accuracy_kept_classes", test["eval_test_accuracy"]), "s": seconds,
            "outcome": trainer.outcome.reason}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", nargs="*", type=int, default=[64, 128, 256, 512])
    parser.add_argument("--scenarios", nargs="*", default=["sms_minilm_class", "sms_minilm_random"])
    parser.add_argument("--out", default="outputs/low_rank_space")
    args = parser.parse_args()
    torch.set_num_threads(2)
    transformers.logging.set_verbosity_error()
    scenario = SCENARIOS["sms_minilm_random"]
    data, tokenizer = load_data(scenario.family)
    original, full, _ = _cached_original(Path("outputs/fidelity/cache"), scenario, data, tokenizer, 0)
    print(f"full space: padding {full.padding}, gamma {full.gamma} ({full.energy} energy)")
    lines = ["| stored rank | size MB | largest dropped λ ÷ top λ | distinct inputs capped below γ | "
             + " | ".join(f"{s}: forget / retain / test, s" for s in args.scenarios) + " |",
             "|---|---|---|---|" + "---|" * len(args.scenarios)]
    print("\n".join(lines))
    for rank in [None, *args.ranks]:
        space = copy.deepcopy(full)
        if rank is not None:
            space.compress(rank)
        facts = describe(space, full.gamma, full.energy)
        cells = []
        for name in args.scenarios:
            r = run(original, space, name, Path(args.out) / f"{name}-{rank}")
            cells.append(f"{r['forget']:.1f} / {r['retain']:.1f} / {r['test']:.1f}, {r['s']:.1f}")
        lines.append(f"| {rank or 'full'} | {facts['MB']:.1f} | {facts['dropped']:.2e} | {facts['capped']} | "
                     + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    title = f"A low-rank space on MiniLM (SMS spam), default path; γ = {full.gamma} on {full.energy} energy"
    write_results("low_rank_space", {"tables": {"ranks": table_from_markdown("\n".join(lines), title)}})


if __name__ == "__main__":
    main()
