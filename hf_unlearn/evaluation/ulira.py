"""U-LiRA-style per-example likelihood-ratio attack: can an attacker tell an unlearned model from a retrained one?

The idea (Hayes et al., "Inexact unlearning needs more careful evaluations", arXiv 2403.01218): population
attacks that threshold one confidence for all examples are weak; an attacker who knows, *per example*, how
its confidence is distributed under unlearned models and under models that never saw it, and scores a model
by the likelihood ratio of the two, is far stronger, and how vulnerable an example is varies a lot.

What this module computes from the confidences of N unlearned and N retrained models on the forget set
(the logit-scaled confidences of :mod:`challenge_score`, shape (models, examples)):

1. The models of each family are dealt into K folds (K = 2: two halves, then swapped). For each fold, the
   other folds are the attacker's *shadow* models and the fold's models are the *targets*.
2. On the shadow models, each forget example gets one Gaussian per family: the mean and variance of its
   confidence under the unlearned shadows, and under the retrained shadows.
3. Each target model's confidence on each example is scored by the log likelihood ratio
   ``log N(c; μ_u, σ_u²) - log N(c; μ_r, σ_r²)``: positive says "unlearned".
4. Every model is a target exactly once, so every (model, example) pair gets one score. Reported: the AUC
   and the balanced accuracy (at score 0, the Bayes rule for equal priors: nothing is fitted to the targets)
   over all pairs, the AUC per example (which examples give the method away), and a model-level AUC where a
   model's score is the sum of its examples' scores (an attacker who judges the whole forget set at once).

0.5 means the attacker cannot tell the families apart; 1.0 means every target is recognised.

How this differs from the paper's full protocol, and why the numbers are not the paper's:

- The paper draws many forget sets: its shadow models are trained on random halves of the data and then
  unlearned, so each example has shadows in which it was trained and forgotten, and shadows in which it was
  never seen; the attacked example is judged against held-out examples. Here the forget set is **fixed** (the
  request being audited), and the shadows are the audit's own unlearning runs and retrains of that one
  request, split by cross-validation. There are no per-example in/out shadow *originals*: the attack asks
  "is this model one of the method's outputs or a retrained one?", example by example, for this request.
- With N models a side, the shadows hold N(K-1)/K models per family: variances from 8 samples are noisy, so
  ``variance="global"`` (one variance per family, pooled over examples, as LiRA does with few shadows) is
  offered beside the per-example one; a floor keeps a family of identical confidences (a method that does
  nothing, or a deterministic one) from dividing by zero: it stays (rightly) easy to recognise.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

VARIANCE_FLOOR = 1e-6  # in squared logit-scaled confidence: far below any two seeds' differences
VARIANCES = ("per_example", "global")


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """The area under the ROC curve of scores (positives should score higher), ties counted half."""
    positive, negative = np.asarray(positive, dtype=np.float64), np.asarray(negative, dtype=np.float64)
    if positive.size == 0 or negative.size == 0:
        raise ValueError("the AUC needs at least one positive and one negative score")
    ranks = rankdata(np.concatenate([positive, negative]))
    rank_sum = ranks[: positive.size].sum() - positive.size * (positive.size + 1) / 2
    return float(rank_sum / (positive.size * negative.size))


def _folds(num_models: int, num_folds: int, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(num_models), num_folds)


def _gaussian(shadow: np.ndarray, variance: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-example mean and variance (floored) of (models, examples) confidences."""
    mean = shadow.mean(axis=0)
    var = shadow.var(axis=0, ddof=1)
    if variance == "global":
        var = np.full_like(var, var.mean())
    return mean, np.maximum(var, VARIANCE_FLOOR)


def _log_density(x: np.ndarray, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    return -0.5 * (np.log(2 * np.pi * var) + (x - mean) ** 2 / var)


def likelihood_ratio_scores(
    unlearned: np.ndarray, retrained: np.ndarray, *, num_folds: int = 2, variance: str = "per_example",
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Every model's log likelihood ratio per example, each model scored as a target by the other folds' shadows.

    Returns ``(scores_unlearned, scores_retrained)`` with the shapes of the inputs; positive means "unlearned".
    """
    u, r = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"need (models, examples) arrays over the same examples, got {u.shape} and {r.shape}")
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}")
    if num_folds < 2:
        raise ValueError(f"need at least 2 folds (shadow and target models), got {num_folds}")
    fewest = min(len(u), len(r))
    if fewest < num_folds or fewest - -(-fewest // num_folds) < 2:  # a target in every fold, 2 shadows left
        raise ValueError(
            f"{num_folds} folds need enough models a side for a target in every fold and at least two shadow "
            f"models per family beside it (4 with 2 folds); got {len(u)} unlearned and {len(r)} retrained"
        )
    rng = np.random.default_rng(seed)
    folds_u, folds_r = _folds(len(u), num_folds, rng), _folds(len(r), num_folds, rng)
    scores_u, scores_r = np.empty_like(u), np.empty_like(r)
    for target_u, target_r in zip(folds_u, folds_r):
        mean_u, var_u = _gaussian(np.delete(u, target_u, axis=0), variance)
        mean_r, var_r = _gaussian(np.delete(r, target_r, axis=0), variance)
        for targets, scores, source in ((target_u, scores_u, u), (target_r, scores_r, r)):
            x = source[targets]
            scores[targets] = _log_density(x, mean_u, var_u) - _log_density(x, mean_r, var_r)
    return scores_u, scores_r


def ulira(
    unlearned: np.ndarray, retrained: np.ndarray, *, num_folds: int = 2, variance: str = "per_example",
    seed: int = 0,
) -> dict:
    """The attack's success at telling unlearned from retrained models (0.5: indistinguishable).

    ``unlearned`` and ``retrained`` are (models, examples) confidences on the forget set. Returns ``auc`` and
    ``accuracy`` over all (target model, example) pairs, ``model_auc`` (a model scored by the sum over its
    examples), and ``example_auc``: one AUC per forget example, over the target models.
    """
    scores_u, scores_r = likelihood_ratio_scores(unlearned, retrained, num_folds=num_folds, variance=variance,
                                                 seed=seed)
    balanced = 0.5 * ((scores_u > 0).mean() + (scores_r < 0).mean())
    per_example = np.array([auc(scores_u[:, i], scores_r[:, i]) for i in range(scores_u.shape[1])])
    return {
        "auc": auc(scores_u.ravel(), scores_r.ravel()),
        "accuracy": float(balanced),
        "model_auc": auc(scores_u.sum(axis=1), scores_r.sum(axis=1)),
        "example_auc": per_example,
    }
