"""When a sample removal's step should grow, and when a grown one should come back down.

A saturated softmax gives a confident forget set a vanishing gradient, and a run at a fixed step then
crawls: the digits CNN of the fidelity suite took 155 steps and 31 checks, its forget set's mean
true-label probability going 0.9997 -> 0.9996 per check. The pace is read on the log-odds of that
probability (a causal LM's likelihood): continuous where the accuracy stays at 100 % for many checks,
and about steady per check at a fixed step (that CNN: 0.9997 -> 0.9765 in 30 checks, about 0.2 a
check). Growing to x16 cost the CNN 3 points of test accuracy (the large steps hurt held-out data even
before the crossing), x4 ended where the fixed step did in half the steps: hence the cap.
"""

from __future__ import annotations

import math

from .state import ControlSettings, RunOutcome


def log_odds(probability: float, scale: float = 1.0) -> float:
    """log(p / (1 − p)) of ``probability / scale`` (scale 100 for a likelihood in percent), kept finite."""
    p = min(max(probability / scale, 1e-12), 1.0 - 1e-12)
    return math.log(p / (1.0 - p))


def growth_factor(
    settings: ControlSettings,
    outcome: RunOutcome,
    *,
    start: float,
    before: float,
    now: float,
    target: float,
    scale: float = 1.0,
) -> float:
    """The factor for the learning rate after a good check that did not stop the run: ``settings.growth``
    while, at the pace from the previous check (``before``) to this one (``now``), the target is more than
    ``growth_horizon`` checks away and not receding (at most ``max_growths`` times); its inverse once a grown
    step is within a quarter of that; else 1. Only while the target is still ahead and was at the ``start`` (a
    forget set already below it gives no pace to judge); the caller stops growth after any rollback or
    overshoot. ``scale`` is 100 for a percentage (a causal LM's likelihood).
    """
    if any(math.isnan(v) for v in (target, start, before, now)) or not (now > target and start > target):
        return 1.0
    odds = [log_odds(v, scale) for v in (before, now, target)]
    pace, left = odds[0] - odds[1], odds[1] - odds[2]
    if 0.0 <= pace and pace * settings.growth_horizon < left and outcome.growths < settings.max_growths:
        return settings.growth  # stalled; a confidence moving back up is not helped by a larger step
    if pace * settings.growth_horizon / 4 >= left and outcome.learning_rate_scale > 1.0:
        return 1.0 / settings.growth
    return 1.0
