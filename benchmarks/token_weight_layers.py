"""Which hidden state tells a causal LM's forgotten facts from its template: the token weights per layer.

    .venv/bin/python -m benchmarks.token_weight_layers --people 30

On the original of ``benchmarks/tofu.py`` (SmolLM2-135M fine-tuned on invented people, cached), the forget
answers' token weights (``hf_unlearn.methods.token_weights``) with the kept answer tokens' states read at several
depths, averaged over three kinds of target token: the fact's tokens, words copied from the question, and the
rest (template, punctuation, end of text). With and without the word-level copy test (without: same token ids).
Results: ``benchmarks/results/token_weight_layers.json``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import hf_unlearn.methods.token_weights as token_weights
from hf_unlearn.data.causal_lm import CausalLMCollator, tokenize_for_causal_lm
from hf_unlearn.data.tofu_shaped import forget_count, load_tofu_shaped_dataset, tofu_shaped_facts, tofu_splits
from hf_unlearn.methods.base import next_token_targets
from hf_unlearn.training.neighbour_target import answer_token_features, copy_rate

from .lm_facts import fine_tune, load_base
from .results_io import table, write_results
from .tofu import TRAIN_COLUMNS

LAYERS = (0.5, 0.75, 0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--people", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=float, default=10.0)
    parser.add_argument("--out", default="outputs/tofu")
    options = parser.parse_args()
    base, tokenizer = load_base()
    data = load_tofu_shaped_dataset(options.people, holdout_people=2 * forget_count(10, options.people),
                                    seed=options.seed)
    splits = tofu_splits(data, 10)
    original, _ = fine_tune(base, data["full"].select_columns(TRAIN_COLUMNS), tokenizer, options.epochs,
                            options.seed, Path(options.out) / f"seed{options.seed}" / "original")
    collate = CausalLMCollator.for_tokenizer(tokenizer)
    kept = tokenize_for_causal_lm(splits["retain"].select_columns(TRAIN_COLUMNS), tokenizer)
    batch = collate(list(tokenize_for_causal_lm(splits["forget"].select_columns(TRAIN_COLUMNS), tokenizer)))
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    targets = next_token_targets(torch.zeros(*batch["labels"].shape, 1), batch["labels"])[1]
    fact_ids = {t for fact in splits["forget"]["fact"]
                for t in tokenizer(" " + fact, add_special_tokens=False).input_ids}
    facts = torch.tensor([int(t) in fact_ids for t in targets])
    rows = []
    with torch.no_grad():
        hidden = original(**inputs, output_hidden_states=True).hidden_states
    for layer in LAYERS:
        token_weights.TOKEN_LAYER = layer
        found = answer_token_features(original, kept, collate, "cpu")
        for words in (True, False):
            bank = token_weights.RetainTokenNeighbours(found["features"], found["labels"],
                                                       tokenizer=tokenizer if words else None)
            weights = token_weights.token_weights(bank, hidden, inputs, batch["labels"])
            copied = (token_weights.word_copies(bank, batch["input_ids"], batch["labels"], batch["attention_mask"])
                      if words else token_weights.prompt_copies(batch["input_ids"], batch["labels"],
                                                                batch["attention_mask"]))
            rest = ~facts & ~copied
            rows.append([f"{layer:g}", "words" if words else "token ids", f"{weights[facts].mean():.2f}",
                         f"{weights[copied & ~facts].mean():.2f}", f"{weights[rest].mean():.2f}",
                         f"{int(rest.sum())}", f"{int((weights[rest] > 0.5).sum())}"])
            print(rows[-1], flush=True)
    # the premise the trainer checks: the copied tokens of held-out people's answers (benchmarks.tofu's stop people)
    held = forget_count(10, options.people)
    every = tofu_shaped_facts(options.people + 2 * held, options.seed)
    stop_people = [i for i, p in enumerate(every["person"]) if p >= options.people + held]
    held_out = tokenize_for_causal_lm(every.select(stop_people).select_columns(TRAIN_COLUMNS), tokenizer)
    rate = copy_rate(original, held_out, collate, "cpu",
                     token_weights.RetainTokenNeighbours(found["features"], found["labels"], tokenizer=tokenizer))
    title = (f"Mean forget-loss weight of SmolLM2-135M's forget answer tokens (10 % of {options.people} invented "
             f"people, seed {options.seed}) by the depth of the hidden state and the copy test")
    notes = ("Weights run from 0.05 (every kept neighbour says the same token, or a copy) to 1.05 (none does). "
             f"{len(targets)} target tokens, {int(facts.sum())} of them the facts'. The default: 0.75, words. "
             f"The original "
             f"predicts {100 * rate:.0f} % of the held-out people's copied answer tokens (the trainer keeps uniform "
             f"weights below {100 * token_weights.MIN_COPY_RATE:.0f} %).")
    columns = ["depth", "copy test", "facts", "copied from the question", "the rest", "the rest: tokens",
               "the rest: weight > 0.5"]
    write_results("token_weight_layers", {"tables": {f"seed{options.seed}": table(columns, rows, title, notes)}})


if __name__ == "__main__":
    main()
