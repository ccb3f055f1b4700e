"""The audit's report: per-example scores of many unlearned models against many retrained ones, in JSON and Markdown.

Input per family of models (the method's N unlearning runs, the N retrains): the forget-set confidences
(models, examples) and each model's forget, retain and test accuracy and run time. Output: the challenge's
forget and final score, the U-LiRA attack, the ε histogram, the forget examples that give the method away
(by their training-set index), and the score with the first 4, 8, ... models a side, so a reader sees whether
N was enough (a score still moving at N means N was too few).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from .challenge_score import EPSILON_CAP, final_score, forget_score
from .tables import markdown_table
from .ulira import ulira

ULIRA_MIN_MODELS = 4  # two folds of two shadows a side


def _family_summary(runs: dict) -> dict:
    return {
        "forget_accuracy": float(np.mean(runs["forget_accuracy"])),
        "retain_accuracy": float(np.mean(runs["retain_accuracy"])),
        "test_accuracy": float(np.mean(runs["test_accuracy"])),
        "seconds_per_run": float(np.mean(runs["seconds"])),
        "incomplete_runs": runs.get("incomplete_runs"),  # runs whose stop rule missed its target (None: unknown)
    }


def epsilon_histogram(epsilons: np.ndarray, num_models: int) -> list[dict]:
    """Counts of examples per scoring bucket of ε: 0.5 wide below the resolution ``ceil(log(N - 1))`` (each
    bucket's points beside it), then "beyond resolution" (0 points) and "separated" (the cap: a rule or a
    point mass tells every model apart)."""
    top = math.ceil(math.log(num_models - 1))
    rows = []
    for bucket in range(int(top / 0.5)):
        low, high = bucket * 0.5, (bucket + 1) * 0.5
        count = int(((epsilons >= low) & (epsilons < high)).sum())
        rows.append({"bucket": f"{low:.1f}-{high:.1f}", "points": 0.5**bucket, "examples": count})
    rows.append({"bucket": f">= {top:.1f}", "points": 0.0,
                 "examples": int(((epsilons >= top) & (epsilons < EPSILON_CAP)).sum())})
    rows.append({"bucket": "separated", "points": 0.0, "examples": int((epsilons >= EPSILON_CAP).sum())})
    return rows


def _most_distinguishable(u: np.ndarray, r: np.ndarray, epsilons: np.ndarray, example_auc: np.ndarray | None,
                          indices: Sequence[int], labels: Sequence[int], top: int) -> list[dict]:
    """The forget examples that tell the families apart best: highest ε, then the attack's per-example AUC, then
    the gap of the means in pooled standard deviations (ranks examples that are all at the cap)."""
    gap = np.abs(u.mean(axis=0) - r.mean(axis=0)) / np.sqrt(0.5 * (u.var(axis=0) + r.var(axis=0)) + 1e-12)
    attack = np.abs(example_auc - 0.5) if example_auc is not None else np.zeros_like(gap)
    order = np.lexsort((-gap, -attack, -epsilons))[:top]
    return [
        {
            "index": int(indices[i]),
            "label": int(labels[i]),
            "epsilon": float(epsilons[i]),
            "ulira_auc": None if example_auc is None else float(example_auc[i]),
            "confidence_unlearned": [float(u[:, i].mean()), float(u[:, i].std())],
            "confidence_retrained": [float(r[:, i].mean()), float(r[:, i].std())],
        }
        for i in order
    ]


def num_models_steps(num_models: int) -> list[int]:
    """4, 8, 16, ... below N, then N itself (at least 3 models a side score)."""
    steps, n = [], 4
    while n < num_models:
        steps.append(n)
        n *= 2
    return steps + [num_models]


def score_family(runs: dict, retrained: dict, indices: Sequence[int], labels: Sequence[int], *,
                 top_examples: int = 10) -> dict:
    """Everything the report says about one family against the retrained models (first N of each)."""
    num_models = min(len(runs["confidences"]), len(retrained["confidences"]))
    u = np.asarray(runs["confidences"], dtype=np.float64)[:num_models]
    r = np.asarray(retrained["confidences"], dtype=np.float64)[:num_models]
    scored = forget_score(u, r)
    mine, theirs = _family_summary(runs), _family_summary(retrained)
    attack = ulira(u, r) if num_models >= ULIRA_MIN_MODELS else None
    spread_r = np.maximum(r.std(axis=0), 1e-12)
    by_n = []
    for n in num_models_steps(num_models):
        if n == num_models:  # the whole families: scored above
            score, attack_auc = scored["forget_score"], None if attack is None else attack["auc"]
        else:
            score = forget_score(u[:n], r[:n])["forget_score"]
            attack_auc = ulira(u[:n], r[:n])["auc"] if n >= ULIRA_MIN_MODELS else None
        by_n.append({"num_models": n, "forget_score": score, "ulira_auc": attack_auc})
    return {
        "num_models": num_models,
        "forget_score": scored["forget_score"],
        "final_score": final_score(scored["forget_score"], mine["retain_accuracy"], theirs["retain_accuracy"],
                                   mine["test_accuracy"], theirs["test_accuracy"]),
        "ulira": None if attack is None else {k: attack[k] for k in ("auc", "accuracy", "model_auc")},
        # why examples give a family away: its seed-to-seed spread against retraining's (a "peaky" family, far
        # below 1, is caught however close its mean), and the gap of the means in retrained standard deviations
        "spread_ratio": float(np.median(u.std(axis=0) / spread_r)),
        "mean_shift": float(np.median(np.abs(u.mean(axis=0) - r.mean(axis=0)) / spread_r)),
        **mine,
        "epsilon_histogram": epsilon_histogram(scored["epsilons"], num_models),
        "most_distinguishable": _most_distinguishable(u, r, scored["epsilons"],
                                                      None if attack is None else attack["example_auc"],
                                                      indices, labels, top_examples),
        "by_num_models": by_n,
        "per_example": {"epsilon": scored["epsilons"].tolist(),
                        "ulira_auc": None if attack is None else attack["example_auc"].tolist()},
    }


def _fmt(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def render_markdown(report: dict) -> str:
    """The report as a page: the summary table, the score against N, then per family its ε histogram and the
    forget examples that give it away."""
    setup, families = report["setup"], report["families"]
    rows = []
    for name, fam in families.items():
        attack = fam["ulira"] or {}
        rows.append([name, _fmt(fam["forget_score"]), _fmt(fam["final_score"]), _fmt(attack.get("auc")),
                     _fmt(attack.get("accuracy")), _fmt(attack.get("model_auc")), _fmt(fam["spread_ratio"], 2),
                     _fmt(fam["mean_shift"], 2),
                     f"{fam['forget_accuracy']:.1f}", f"{fam['retain_accuracy']:.1f}", f"{fam['test_accuracy']:.1f}",
                     f"{fam['seconds_per_run']:.2f}",
                     "" if fam["incomplete_runs"] is None else f"{fam['incomplete_runs']}/{fam['num_models']}"])
    ref = report["retrained"]
    rows.append(["(retrained models)", "", "", "", "", "", "", "", f"{ref['forget_accuracy']:.1f}",
                 f"{ref['retain_accuracy']:.1f}", f"{ref['test_accuracy']:.1f}", f"{ref['seconds_per_run']:.2f}", ""])
    lines = [
        f"# Unlearning audit: {setup['num_forget']} forget examples, {setup['num_models']} models a side",
        "",
        markdown_table(["family", "forget score", "final score", "U-LiRA AUC", "U-LiRA acc", "model-level AUC",
                        "spread", "shift", "forget acc", "retain acc", "test acc", "s / run", "incomplete"], rows),
        "",
        "Forget score: the unlearning-challenge score, the mean over forget examples of points earned by how well "
        "the best threshold rule on that example's confidence tells this family's models from retrained ones "
        "(higher is better; 0 = every example gives the family away). Final score: forget score x retain and test "
        "accuracy relative to the retrained models. U-LiRA: a per-example likelihood-ratio attack with shadow "
        "models (0.5 = cannot tell the families apart, 1 = always can); model-level: one decision per model from "
        "all forget examples. Spread: the family's seed-to-seed standard deviation of an example's confidence over "
        "the retrained models' (median over examples; far below 1 is a \"peaky\" family, recognised however close "
        "its mean); shift: the gap of the means in retrained standard deviations (median). Accuracies in %, means "
        "over the family's models. Incomplete: runs whose stop "
        "rule ended before its target (the budget or the utility guard stopped them).",
    ]
    if "ceiling" in families:
        lines += ["", "`ceiling`: a second set of retrained models scored against the first — the most any method "
                  "can reach with this many models."]
    lines += ["", "## The score with n models a side", "",
              "The points per ε bucket stop at log(n - 1), so the score falls with n for every family: read each "
              "column against the ceiling's at the same n (when there is one). A U-LiRA AUC still rising with n "
              "means more shadow models would make the attack stronger still.", ""]
    steps = [s["num_models"] for s in next(iter(families.values()))["by_num_models"]]
    step_rows = [[name] + [f"{_fmt(s['forget_score'])} / {_fmt(s['ulira_auc'])}" for s in fam["by_num_models"]]
                 for name, fam in families.items()]
    lines.append(markdown_table(["family (forget score / U-LiRA AUC)"] + [f"n = {n}" for n in steps], step_rows))
    for name, fam in families.items():
        lines += ["", f"## {name}", "", "ε per forget example (ε buckets as the score counts them):", "",
                  markdown_table(["ε", "points", "examples"],
                                 [[h["bucket"], f"{h['points']:g}", h["examples"]] for h in fam["epsilon_histogram"]]),
                  "", "The forget examples that give it away most (training-set index):", "",
                  markdown_table(["index", "label", "ε", "U-LiRA AUC", "confidence (mean ± sd) unlearned",
                                  "retrained"],
                                 [[e["index"], e["label"], f"{e['epsilon']:.2f}", _fmt(e["ulira_auc"], 2),
                                   "{:.2f} ± {:.2f}".format(*e["confidence_unlearned"]),
                                   "{:.2f} ± {:.2f}".format(*e["confidence_retrained"])]
                                  for e in fam["most_distinguishable"]])]
    return "\n".join(lines) + "\n"
