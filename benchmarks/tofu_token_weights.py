"""Which answer tokens the default path pushes on a causal LM: uniform weights against the token weights.

    .venv/bin/python -m benchmarks.tofu_token_weights --people 30 --threads 2

The set-up of ``benchmarks/tofu.py`` (SmolLM2-135M fine-tuned on invented people, the retain model as the reference,
the same cached fine-tunes), the default path three ways: every answer token pushed alike
(``pgu_neighbour_weights=False``); each token weighed by how few of its nearest kept answer tokens are the same token,
copied prompt words at the floor (``pgu_keep_answer_tokens=0``); and the default, which also holds the explained
tokens with a weighted cross-entropy. Besides the TOFU measures, the greedy answers to the first forgotten person's
questions, so the reader sees what "fluent" means. Results: ``benchmarks/results/tofu_token_weights.json``.
"""

from __future__ import annotations

from .results_io import table, write_results
from .tofu import COLUMNS, prepare_seed, run_variant, start, summary

VARIANTS = {
    "uniform weights": {"pgu_neighbour_weights": False},
    "token weights": {"pgu_keep_answer_tokens": 0.0},
    "token weights + kept tokens (default)": None,
}
SHOWN = 5  # forgotten questions whose answers the table shows (the first forgotten person's)


def main() -> None:
    options, base, tokenizer = start(__doc__)
    tables, answers = {}, {}
    for seed in options.seeds:
        prepared = prepare_seed(seed, options, base, tokenizer)
        for name, kwargs in VARIANTS.items():
            run_variant(prepared, name, "auto", tokenizer, options, kwargs)
        reports = prepared["reports"]
        title = (f"SmolLM2-135M forgets {options.percent} % of {options.people} invented people with the default "
                 f"path (full weights, seed {seed}, at most {options.budget_epochs:g} epochs): which tokens it pushes")
        notes = ("Judge perplexity: the original's perplexity of a model's greedy answers. s: fine-tuning for the "
                 "retain model and the original, unlearning for the others.")
        tables[f"seed{seed}"] = table(COLUMNS, [summary(n, r, e) for n, (r, e) in reports.items()], title=title,
                                      notes=notes)
        questions = prepared["eval_splits"]["forget"]["question"][:SHOWN]
        rows = [[q, *(reports[n][0]["answers"]["forget"][i] for n in reports)] for i, q in enumerate(questions)]
        tables[f"answers_seed{seed}"] = table(["question", *reports], rows,
                                              title=f"Greedy answers to forgotten questions (seed {seed})")
        answers[f"seed{seed}"] = {n: r["answers"] for n, (r, _) in reports.items()}
        write_results("tofu_token_weights", {"tables": tables, "answers": answers})


if __name__ == "__main__":
    main()
