"""Closeness per forget example, not only on average.

Avg. Gap compares population numbers: a method can match the retrained model's forget accuracy and
MIA while every single example sits in the wrong place (some pushed far below where a retrained model
puts them, others left memorised). Two per-example measures of the logit-scaled confidence
``log p_y − log(1 − p_y)`` on the forget set:

* ``outside``: the share of forget examples whose confidence lies outside the range the range
  references give it (the references other than ``reference_2``; with none extra, the two references).
  ``reference_2`` measured against the others is the floor: under exchangeable references a new one
  falls outside the range of k others with probability 2/(k+1).
* ``dist``: the mean over forget examples of |confidence − the range references' mean confidence for that
  example| (``reference_2``'s is the floor). With three range references the range is narrow against the
  spread between retrained models (a fourth reference falls outside it half the time), so ``outside``
  separates little; ``dist`` and ``KS`` are the finer reads.
* ``KS``: the Kolmogorov–Smirnov distance between the method's and the first reference's confidences over
  the forget set (distribution shape, not per example; ``reference_2``'s is its floor).
"""

from __future__ import annotations

import numpy as np

from hf_unlearn.evaluation.challenge_score import logit_scaled_confidence
from hf_unlearn.evaluation.predict import collect_outputs


def confidences(model, dataset, collate_fn) -> np.ndarray:
    """Logit-scaled confidence of every example of ``dataset`` under ``model``, in order."""
    outputs = collect_outputs(model, dataset, collate_fn=collate_fn)
    return logit_scaled_confidence(outputs["logits"].numpy(), outputs["labels"].numpy())


def ks_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov–Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = np.sort(np.asarray(a, dtype=np.float64)), np.sort(np.asarray(b, dtype=np.float64))
    points = np.concatenate([a, b])
    gap = np.searchsorted(a, points, side="right") / len(a) - np.searchsorted(b, points, side="right") / len(b)
    return float(np.abs(gap).max())


def outside_share(values: np.ndarray, references: list[np.ndarray]) -> float:
    """Share of examples whose value lies outside [min, max] of the references' values for that example."""
    stack = np.stack(references)
    low, high = stack.min(axis=0), stack.max(axis=0)
    return float(np.mean((values < low) | (values > high)))


def per_example_row(values: np.ndarray, range_refs: list[np.ndarray], first_ref: np.ndarray) -> dict[str, float]:
    """``outside`` (percent), ``dist`` and ``KS`` of one model's forget-set confidences."""
    centre = np.mean(np.stack(range_refs), axis=0)
    return {"outside": 100.0 * outside_share(values, range_refs), "dist": float(np.mean(np.abs(values - centre))),
            "KS": ks_distance(values, first_ref)}
