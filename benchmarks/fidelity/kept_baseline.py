"""Which kept examples the sample-removal target's neighbour correction compares the forget set with: the guard's
retain sample (128 examples, the earlier reading) or the forget-loss weights' kept sample (up to 2 048, read once:
``training/neighbour_target.kept_bank_features``).

    .venv/bin/python -m benchmarks.fidelity.kept_baseline      # runs what is missing, then writes the tables

The same jobs as ``kept_repair.py``, each (scenario, seed) run both ways before the next, in its own folder under
``outputs/fidelity_kept_baseline/``; originals and references come from the suite's caches. Writes
``benchmarks/results/fidelity_kept_baseline.json``.
"""

from __future__ import annotations

from unittest import mock

from hf_unlearn.training import neighbour_target
from hf_unlearn.training import trainer as trainer_module

from .kept_repair import JOBS
from .variants import side_by_side_main, unchanged


def _guard_features(trainer, model):
    """The earlier comparison: the guard's retain sample, read for the target alone."""
    kept = trainer._check_samples()[1]
    return neighbour_target.middle_features(model, trainer._memory(kept), trainer.base_collator,
                                            trainer.args.device) if len(kept) else None


def _reading_guard_sample(trainer, known, model=None):
    with mock.patch.object(neighbour_target, "kept_bank_features", _guard_features):
        return neighbour_target.sample_removal_targets(trainer, known, model)


def _guard_sample():
    """The target reads the guard's sample; the forget-loss weights still read their own kept sample."""
    return mock.patch.object(trainer_module, "sample_removal_targets", _reading_guard_sample)


VARIANTS = {"guard's 128": _guard_sample, "forget-loss weights' 2 048": unchanged}


def main(argv=None) -> None:
    side_by_side_main(argv, doc=__doc__, benchmark="fidelity_kept_baseline", jobs=JOBS, variants=VARIANTS,
                      title="Default path, the target's neighbour correction against the guard's retain sample or "
                      "the forget-loss weights' kept sample")


if __name__ == "__main__":
    main()
