"""Per-example audit: can each forget example's confidence tell unlearned models from retrained ones?

An average (Avg. Gap, one membership attack) can match while every single example is wrong. This score, defined
for the NeurIPS 2023 unlearning challenge (Triantafillou et al., "Are we making progress in unlearning?"),
looks at every forget example across many models: N runs of the method from the same original (seeds) and N
models retrained without the forget set. For one example, each model gives a logit-scaled confidence
``log p_y - log(1 - p_y)``; an attacker who sees one confidence guesses which family the model came from with
a threshold rule. The best rule's false positive / false negative rates bound an (ε, δ) distinguishability:

    ε = max(log(1 - δ - FPR) - log FNR, log(1 - δ - FNR) - log FPR),   δ = 1e-5.

Two rule families are searched exhaustively over the observed values (the rates change only there): a single
threshold (the family with the larger median is predicted above it) and an interval about as wide as the peakier
family's spread, within 2 units (that family is predicted inside it). A rule with one of FPR / FNR at zero says
more about the N samples than about the models and is skipped; perfect separation (both zero) and a family with
(almost) no spread score the cap. Each example then earns points by its ε: 1 below 0.5, 1/2 below 1.0, 1/4 below
1.5 ..., and 0 from ``ceil(log(N - 1))`` on, the most ε that N models a side can show. The forget score is the
mean over examples; the final score multiplies it by the unlearned models' retain and test accuracy relative to
the retrained ones.
"""

from __future__ import annotations

import math

import numpy as np

DELTA = 1e-5
EPSILON_CAP = 50.0
PEAKY_RATIO = 0.01  # a family whose spread is below 1 % of the other's is treated as a point mass: the cap
INTERVAL_SLACK = 2.0  # interval rules: width within this (in logit-scaled confidence) of the peakier spread


def logit_scaled_confidence(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log p_y - log(1 - p_y)`` per row, computed as ``z_y - logsumexp(z without y)`` (stable for p_y near 1)."""
    logits = np.asarray(logits, dtype=np.float64)
    rows = np.arange(len(logits))
    true = logits[rows, labels]
    others = logits.copy()
    others[rows, labels] = -np.inf
    top = others.max(axis=1, keepdims=True)
    return true - (top[:, 0] + np.log(np.exp(others - top).sum(axis=1)))


def _rates_single(pos: np.ndarray, neg: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive when the value is at least the cut" for every cut."""
    tpr = (pos[None, :] >= cuts[:, None]).mean(axis=1)
    fpr = (neg[None, :] >= cuts[:, None]).mean(axis=1)
    return fpr, 1.0 - tpr


def _rates_interval(pos: np.ndarray, neg: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, FNR) of "positive inside [low, high]" for every pair of observed values whose distance is within
    ``INTERVAL_SLACK`` of the positive (peakier) family's spread: a window the size of that family, not any
    sliver that happens to hold a few of its samples and none of the other's."""
    low, high = np.meshgrid(values, values, indexing="ij")
    width = np.ptp(pos)
    keep = (high - low >= width - INTERVAL_SLACK) & (high - low <= width + INTERVAL_SLACK) & (low <= high)
    low, high = low[keep], high[keep]
    inside_pos = ((pos[None, :] >= low[:, None]) & (pos[None, :] <= high[:, None])).mean(axis=1)
    inside_neg = ((neg[None, :] >= low[:, None]) & (neg[None, :] <= high[:, None])).mean(axis=1)
    return inside_neg, 1.0 - inside_pos


def _epsilon_of_rules(fpr: np.ndarray, fnr: np.ndarray, delta: float) -> float:
    if np.any((fpr == 0) & (fnr == 0)):
        return math.inf  # a rule separates the two samples perfectly
    usable = (fpr > 0) & (fnr > 0)
    if not usable.any():
        return 0.0
    fpr, fnr = fpr[usable], fnr[usable]
    with np.errstate(invalid="ignore", divide="ignore"):
        first = np.log(np.clip(1 - delta - fpr, 0, None)) - np.log(fnr)
        second = np.log(np.clip(1 - delta - fnr, 0, None)) - np.log(fpr)
    return max(float(np.nanmax(np.maximum(first, second))), 0.0)


def example_epsilon(unlearned: np.ndarray, retrained: np.ndarray, delta: float = DELTA) -> float:
    """ε of one example from its confidences under the unlearned and the retrained models (capped)."""
    a, b = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    spread_a, spread_b = np.ptp(a), np.ptp(b)
    if min(spread_a, spread_b) <= PEAKY_RATIO * max(spread_a, spread_b):
        return EPSILON_CAP if max(spread_a, spread_b) > 0 or a[0] != b[0] else 0.0
    pos, neg = (b, a) if np.median(b) > np.median(a) else (a, b)  # single rule: larger median above the cut
    values = np.unique(np.concatenate([a, b]))
    single = _epsilon_of_rules(*_rates_single(pos, neg, values), delta)
    peaky, wide = (a, b) if spread_a < spread_b else (b, a)  # interval rule: the peakier family inside
    interval = _epsilon_of_rules(*_rates_interval(peaky, wide, values), delta)
    return min(max(single, interval), EPSILON_CAP)


def epsilon_points(epsilon: float, num_models: int) -> float:
    """1 for ε < 0.5, halving per 0.5 of ε, and 0 from ``ceil(log(N - 1))`` on."""
    top = math.ceil(math.log(num_models - 1))
    bucket = int(epsilon // 0.5)
    return 0.0 if (bucket + 1) * 0.5 > top else 0.5**bucket


def forget_score(unlearned_confidences: np.ndarray, retrained_confidences: np.ndarray) -> dict:
    """The forget score of (models, examples) confidence arrays, with every example's ε and points."""
    u, r = np.asarray(unlearned_confidences), np.asarray(retrained_confidences)
    if u.ndim != 2 or u.shape != r.shape:
        raise ValueError(f"need two (models, examples) arrays of one shape, got {u.shape} and {r.shape}")
    if u.shape[0] < 3:
        raise ValueError(f"need at least 3 models a side to score (got {u.shape[0]}); 16 or more is usual")
    epsilons = np.array([example_epsilon(u[:, i], r[:, i]) for i in range(u.shape[1])])
    points = np.array([epsilon_points(e, u.shape[0]) for e in epsilons])
    return {"forget_score": float(points.mean()), "epsilons": epsilons, "points": points}


def final_score(score: float, retain_unlearned: float, retain_retrained: float, test_unlearned: float,
                test_retrained: float) -> float:
    """The forget score scaled by the unlearned models' mean retain and test accuracy relative to retraining's."""
    return score * (retain_unlearned / retain_retrained) * (test_unlearned / test_retrained)
