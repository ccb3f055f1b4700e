"""Which stop rule a run uses (``auto`` resolves by scenario; a rule that needs validation data refuses without
it), how finely a sample-removal crossing can be read, and whether a rule already holds before the first step.

The rules themselves are applied by ``UnlearningControl`` (``controller.py``) at every check.
"""

from __future__ import annotations

import logging
import math

logger = logging.getLogger(__name__)

STOP_RULES = ("auto", "forget_below_validation", "class_removal", "poison_removed", "none")


def resolve_stop_rule(requested: str, scenario: str, has_eval_dataset: bool) -> str:
    """``auto`` picks the rule by scenario; a rule that compares with validation needs an eval set."""
    if requested == "auto":
        if not has_eval_dataset:
            logger.warning("No eval_dataset: the stop rule is off and every epoch runs.")
            return "none"
        return {"class": "class_removal", "poison": "poison_removed"}.get(scenario, "forget_below_validation")
    if requested == "forget_below_validation" and not has_eval_dataset:
        raise ValueError(f"stop_rule={requested!r} compares with validation accuracy: pass eval_dataset=...")
    return requested


def crossing_resolution(metrics: dict[str, float], key: str, validation: float) -> float:
    """How far below the target a forget accuracy may land and still be the target, in points.

    Both sides are samples: the forget accuracy over ``forget_accuracy_count`` examples and the target over
    ``validation_accuracy_count``, so their difference has a standard error of
    100·sqrt(p(1 − p)(1/n_forget + 1/n_validation)) at p = the target. A crossing within it is the draw, not a
    step too far; going back and halving then only re-crosses the noise (MiniLM fine-tuned 3 epochs on 1 000
    rated sentences, 100 forget rows: a 4.5-point crossing against a 4.7-point error, three halvings, 42 steps
    where the first crossing took 12). At least two examples' worth, and 2 points; a likelihood averages over
    every token and keeps the 2 points.
    """
    count = metrics.get("forget_accuracy_count", 0) if key == "forget_accuracy" else 0
    floor = max(2.0, 200.0 / count if count else 0.0)
    held_out = metrics.get("validation_accuracy_count", 0)
    if not count or not held_out or math.isnan(validation):
        return floor
    p = min(max(validation / 100.0, 0.0), 1.0)
    return max(floor, 100.0 * math.sqrt(p * (1.0 - p) * (1.0 / count + 1.0 / held_out)))


def reading_resolution(metrics: dict[str, float], key: str, target: float) -> float:
    """``crossing_resolution`` on ``key``'s own scale. A mean probability in [0, 1] spreads at most as a Bernoulli of
    the same mean, so its resolution is the accuracy's at that mean, scaled to [0, 1]."""
    if key.endswith("_probability"):
        return 0.01 * crossing_resolution(metrics, "forget_accuracy", 100.0 * target)
    return crossing_resolution(metrics, key, target)


def sample_target(source: dict[str, float], key: str) -> float:
    """Sample removal's target for ``key`` (e.g. ``validation_accuracy``) among the original's measurements: the one
    read on the validation examples nearest the forget set when it was measured (``training/neighbour_target.py``),
    else the whole validation sample's."""
    return source.get(f"{key}_neighbours", source.get(key, math.nan))


def target_words(source: dict[str, float], settings) -> str:
    """The target in words: which of the two ``sample_target`` read (``settings``: the run's ``ControlSettings``)."""
    key, words = settings.validation_key, settings.compared_validation
    plain, near = source.get(key, math.nan), source.get(f"{key}_neighbours", math.nan)
    if not math.isnan(near) and near != plain:
        return f"{words} on the validation examples nearest the forget set"
    return words


def class_gone(settings, metrics: dict[str, float]) -> bool:
    """The class-removal rule: the forgotten classes are neither predicted nor given probability."""
    return (
        metrics["forget_accuracy"] <= settings.class_forget_target
        and metrics.get("forget_probability", 1.0) <= settings.class_probability
    )


def nothing_to_unlearn(settings, metrics: dict[str, float], baseline: dict[str, float] | None) -> str | None:
    """Why no step should be taken at all (the rule of ``settings``, a ``ControlSettings``, already holds on the
    model's ``metrics``; sample removal reads its target from ``baseline`` when a series gives one), or None."""
    source = baseline or metrics
    validation = sample_target(source, settings.validation_key)
    validation = -math.inf if math.isnan(validation) else validation
    forget = metrics[settings.forget_key]
    if settings.rule == "forget_below_validation" and forget < validation:
        return (
            f"the forget set already looks like held-out data ({settings.compared} {forget:.1f} "
            f"< {target_words(source, settings)} {validation:.1f}), so the stop rule ends the run before its first step"
        )
    if settings.rule == "class_removal" and class_gone(settings, metrics):
        return (
            f"the forgotten classes are already not predicted (forget accuracy {metrics['forget_accuracy']:.1f} % "
            f"<= {settings.class_forget_target:g} %, mean probability "
            f"{metrics.get('forget_probability', math.nan):.3f} <= {settings.class_probability:g}): the "
            "model never learnt them"
        )
    if settings.rule == "poison_removed" and metrics["forget_accuracy"] <= settings.poison_forget_target:
        return (
            f"the poisoned labels are already rare on the poisoned examples ({metrics['forget_accuracy']:.1f} % "
            f"<= {settings.poison_forget_target:g} %): the model did not learn them"
        )
    return None
