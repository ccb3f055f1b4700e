"""Every TOFU-shaped measure of one model in one call: what a benchmark writes per model.

``tofu_report(model, tokenizer, splits)`` reads the four sets of ``data.tofu_shaped.tofu_splits``. Run it on
the model trained without the forget set first: its ``forget_truth_ratios`` and ``mia_auc`` are the
reference that forget quality and PrivLeak of every other model are measured against.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from torch import nn

from .fluency import fluency
from .tofu_metrics import (
    answer_probability,
    answer_token_stats,
    forget_quality,
    generate_answers,
    membership_aucs,
    model_utility,
    option_log_probs,
    privleak,
    rouge_l_recall,
    truth_ratio_statistic,
    truth_ratios,
)

SPLITS = ("forget", "retain", "holdout", "world_facts")


def qa_measures(model: nn.Module, tokenizer, rows, *, truth_column: str | None = "paraphrased_answer",
                normalise: bool = False, batch_size: int = 16, max_new_tokens: int = 32) -> dict:
    """One set's numbers: ``probability`` (mean over questions; over the answer and its perturbed options when
    ``normalise``), ``rouge_l_recall`` of the greedy answers, ``truth_ratios`` (``truth_column`` against the
    perturbed answers; skipped when None), and the ``answers`` and answer-token ``stats`` behind them."""
    questions, gold = list(rows["question"]), list(rows["answer"])
    stats = answer_token_stats(model, tokenizer, questions, gold, batch_size=batch_size)
    correct = np.array([float(s["log_prob"].double().mean()) for s in stats])
    wrong = None
    if normalise or truth_column is not None:
        wrong = option_log_probs(model, tokenizer, rows, "perturbed_answers", batch_size=batch_size)
    answers = generate_answers(model, tokenizer, questions, max_new_tokens=max_new_tokens, batch_size=batch_size)
    out = {"probability": float(answer_probability(correct, wrong if normalise else None).mean()),
           "rouge_l_recall": float(np.mean([rouge_l_recall(g, a) for g, a in zip(gold, answers, strict=True)])),
           "answers": answers, "stats": stats}
    if truth_column is not None:
        truth = correct if truth_column == "answer" else option_log_probs(model, tokenizer, rows, truth_column,
                                                                           batch_size=batch_size)
        out["truth_ratios"] = truth_ratios(truth, wrong)
    return out


def tofu_report(model: nn.Module, tokenizer, splits: Mapping[str, object], *,
                reference_truth_ratios: Sequence[float] | None = None,
                reference_auc: Mapping[str, float] | None = None, judge: nn.Module | None = None,
                k: float = 0.4, batch_size: int = 16, max_new_tokens: int = 32) -> dict:
    """TOFU's and MUSE's measures of ``model`` on ``splits`` (``forget``, ``retain``, ``holdout``,
    ``world_facts``; see ``data.tofu_shaped.tofu_splits``), as a JSON-ready dict.

    * ``{forget,retain,holdout,world_facts}_probability`` and ``..._rouge_l_recall`` (world facts: the
      probability normalised over the answer and its wrong options);
    * ``forget_truth_ratio`` = mean(min(R, 1/R)) and ``forget_truth_ratios`` (the values, the reference for
      forget quality), ``retain_truth_ratio`` and ``world_facts_truth_ratio`` = mean(max(0, 1 − R));
    * ``model_utility``: harmonic mean of the retain and world-facts probability, ROUGE-L recall and truth
      ratio (six numbers);
    * ``mia_auc``: forget (members) vs holdout AUC by ``loss`` and ``min_k_plus_plus`` (Min-K%++ with ``k``);
    * ``forget_quality`` (with ``reference_truth_ratios``) and ``privleak`` per score (with
      ``reference_auc``): both from the retain model's own report;
    * ``fluency``: per forget and holdout answers, ``non_word_rate``, ``repeat_rate``, ``empty_rate`` and,
      given a ``judge`` model (the original or the retain model), ``judge_perplexity``;
    * ``answers``: the greedy forget and holdout answers, to read.

    Runtime: a set of n questions with m perturbed answers costs about (2 + m)·n teacher-forced answers and n
    generations; a subset of the retain set (TOFU reads 400 questions) is enough.
    """
    missing = [name for name in SPLITS if name not in splits]
    if missing:
        raise ValueError(f"splits lacks {missing}: give forget, retain, holdout and world_facts (tofu_splits).")
    options = {"batch_size": batch_size, "max_new_tokens": max_new_tokens}
    forget = qa_measures(model, tokenizer, splits["forget"], **options)
    retain = qa_measures(model, tokenizer, splits["retain"], **options)
    world = qa_measures(model, tokenizer, splits["world_facts"], truth_column="answer", normalise=True, **options)
    holdout = qa_measures(model, tokenizer, splits["holdout"], truth_column=None, **options)
    report: dict = {}
    for name, measured in (("forget", forget), ("retain", retain), ("holdout", holdout), ("world_facts", world)):
        report[f"{name}_probability"] = measured["probability"]
        report[f"{name}_rouge_l_recall"] = measured["rouge_l_recall"]
    report["forget_truth_ratio"] = truth_ratio_statistic(forget["truth_ratios"], forget=True)
    report["forget_truth_ratios"] = forget["truth_ratios"].tolist()
    report["retain_truth_ratio"] = truth_ratio_statistic(retain["truth_ratios"], forget=False)
    report["world_facts_truth_ratio"] = truth_ratio_statistic(world["truth_ratios"], forget=False)
    utility = {f"{split}_{what}": report[f"{split}_{what}"] for split in ("retain", "world_facts")
               for what in ("probability", "rouge_l_recall", "truth_ratio")}
    report["model_utility"] = model_utility(utility)
    report["mia_auc"] = membership_aucs(forget["stats"], holdout["stats"], k)
    if reference_truth_ratios is not None:
        report["forget_quality"] = forget_quality(report["forget_truth_ratios"], reference_truth_ratios)
    if reference_auc is not None:
        report["privleak"] = {score: privleak(auc, reference_auc[score]) for score, auc in report["mia_auc"].items()}
    fluency_options = {"judge": judge, "tokenizer": tokenizer, "batch_size": batch_size}
    report["fluency"] = {name: fluency(measured["answers"], questions=list(splits[name]["question"]),
                                       **fluency_options)
                         for name, measured in (("forget", forget), ("holdout", holdout))}
    report["answers"] = {"forget": forget["answers"], "holdout": holdout["answers"]}
    return report
