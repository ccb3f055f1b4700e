"""Which sample-removal crossings go back and halve the step: every crossing farther below the target than the
samples resolve (the library), or only those whose previous good state was nearer the target (the earlier rule,
which kept a far crossing whenever the state before it, often the start, lay farther above).

    .venv/bin/python -m benchmarks.fidelity.far_crossing      # runs what is missing, then writes the tables

The jobs of ``kept_repair.py``, each (scenario, seed) run both ways before the next, in its own folder under
``outputs/fidelity_far_crossing/``; originals and references come from the suite's caches. Writes
``benchmarks/results/fidelity_far_crossing.json``.
"""

from __future__ import annotations

from unittest import mock

from hf_unlearn.control.controller import UnlearningControl
from hf_unlearn.control.state import restore_weights, same_weights
from hf_unlearn.control.stop_rules import reading_resolution

from .kept_repair import JOBS
from .variants import side_by_side_main, unchanged


def _halved_only_past_a_nearer_state(control, metrics, key, validation, optimizer, lr_scheduler) -> bool:
    """The earlier ``UnlearningControl._went_back``: a far crossing halves only when the previous state was nearer."""
    previous = control.previous_good[0] if control.previous_good else None
    nearer_before = previous is not None and abs(previous[key] - validation) < abs(metrics[key] - validation)
    far = validation - metrics[key] > reading_resolution(metrics, key, validation)
    if nearer_before and far and optimizer is not None and control.outcome.overshoots < control.settings.max_overshoots:
        restore_weights(control.model, control.previous_good[1], optimizer)
        control.good, control.previous_good = control.previous_good, None
        control._scale_step(optimizer, lr_scheduler, control.settings.shrink)
        control.outcome.overshoots += 1
        return True
    if nearer_before and not same_weights(control.previous_good[1], control.start):
        restore_weights(control.model, control.previous_good[1], optimizer)
        control.good = control.previous_good
    return False


def _earlier_rule():
    return mock.patch.object(UnlearningControl, "_went_back", _halved_only_past_a_nearer_state)


VARIANTS = {"nearer state kept": _earlier_rule, "far crossing halved": unchanged}


def main(argv=None) -> None:
    side_by_side_main(argv, doc=__doc__, benchmark="fidelity_far_crossing", jobs=JOBS, variants=VARIANTS,
                      title="Default path, a far sample-removal crossing kept when the state before it was farther "
                      "above the target, or always halved")


if __name__ == "__main__":
    main()
