"""Which stop rule a run uses: ``auto`` resolves by scenario, and a rule that needs validation data refuses without it.

The rules themselves are applied by ``UnlearningControl`` (``controller.py``) at every check.
"""

from __future__ import annotations

import logging

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
