"""The repair of kept examples a sample removal flipped (training/kept_repair.py): it finds them with the original,
steps on them through the run's projection, and is undone when the forget sample rose past its target."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from hf_unlearn.methods.pgu_retain import PGURetainConfig
from hf_unlearn.training import kept_repair


def _control(initial: dict, confidence: str = "probability"):
    return SimpleNamespace(settings=SimpleNamespace(confidence_key=confidence),
                           outcome=SimpleNamespace(initial=initial),
                           target_validation=lambda initial, key: initial[key])


def test_a_forget_rise_within_the_sample_resolution_is_kept_and_one_beyond_it_is_not():
    initial = {"validation_accuracy": 85.0, "validation_probability": 0.80}
    stop = {"forget_accuracy": 84.0, "forget_probability": 0.79, "forget_accuracy_count": 200,
            "validation_accuracy_count": 256}
    # resolution: 100·sqrt(0.85·0.15·(1/200 + 1/256)) = 3.37 points above max(84, 85)
    within = {"forget_accuracy": 88.3, "forget_probability": 0.82}
    assert kept_repair._forget_rose(_control(initial), stop, within) == ""
    risen = kept_repair._forget_rose(_control(initial), stop, {"forget_accuracy": 88.5, "forget_probability": 0.8})
    assert risen.startswith("forget_accuracy 88.5 above 88.4")
    # the probability's resolution is the accuracy's at its own level, in probability units: 0.0356 above 0.80
    assert "forget_probability" in kept_repair._forget_rose(_control(initial), stop,
                                                             {"forget_accuracy": 80.0, "forget_probability": 0.84})
    assert kept_repair._forget_rose(_control(initial, confidence=""), stop,
                                    {"forget_accuracy": 80.0, "forget_probability": 0.99}) == ""


def test_utility_may_not_fall_beyond_the_guard_tolerance():
    before = {"retain_accuracy": 99.0, "validation_accuracy": 90.0}
    assert kept_repair._utility_lost(before, {"retain_accuracy": 96.1, "validation_accuracy": 95.0}, 3.0) == ""
    assert "retain_accuracy 99.0 -> 95.9" in kept_repair._utility_lost(
        before, {"retain_accuracy": 95.9, "validation_accuracy": 95.0}, 3.0)


def test_zero_steps_or_no_original_means_no_repair():
    from hf_unlearn.methods.pgu_retain import PGURetain

    assert PGURetain(PGURetainConfig()).repair_steps() == 0  # before setup: no frozen original to compare with
    model = torch.nn.Linear(3, 2)
    model.config = SimpleNamespace(num_labels=2)
    for distill, steps in ((4.0, 40), (0.0, 0)):  # without the distillation there is no copy of the original
        method = PGURetain(PGURetainConfig(pgu_retain_distill=distill))
        method.setup(SimpleNamespace(model=model, forgotten_classes=[], causal_lm=False))
        assert method.repair_steps() == steps
    with pytest.raises(ValueError, match="pgu_repair_steps"):
        PGURetainConfig(pgu_repair_steps=-1)


def _wrong_kept(trainer, model) -> set[int]:
    """Kept examples the frozen original classifies right and ``model`` wrong, read independently."""
    rows = trainer.retain_dataset[:]
    with torch.no_grad():
        now = model(pixel_values=rows["pixel_values"]).logits.argmax(-1)
        then = trainer.method.teacher(pixel_values=rows["pixel_values"]).logits.argmax(-1)
    labels = torch.as_tensor(rows["labels"])
    return set(((then == labels) & (now != labels)).nonzero().flatten().tolist())


def _damaged(trainer, scale: float):
    """Noise on every protected weight, projected as a step is: kept examples flip where the space is exposed."""
    protection = trainer.protection
    protection.snapshot()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for weight in trainer.projection.weights.values():
            weight.add_(scale * weight.abs().mean() * torch.randn(weight.shape, generator=generator))
    protection.project()


@pytest.mark.usefixtures("one_thread")
def test_the_repair_puts_flipped_kept_examples_back_through_the_projection(trained_model, digits, tmp_path,
                                                                             monkeypatch):
    from digits_models import make_args

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.forget import random_indices, split_forget_retain

    train = digits["train"]
    forget, retain = split_forget_retain(train, random_indices(len(train), 0.1, seed=4))
    trainer = UnlearningTrainer(model=copy.deepcopy(trained_model), args=make_args(tmp_path, "pgu_retain"),
                                forget_dataset=forget, retain_dataset=retain, eval_dataset=digits["validation"],
                                original_dataset=train)
    trainer.train()
    assert trainer.outcome.stopped_by == "rule" and kept_repair.wants_repair(trainer) == 40
    model = trainer.model
    _damaged(trainer, 1.5)
    flipped = _wrong_kept(trainer, model)
    assert len(flipped) >= 5
    damaged = {k: w.detach().clone() for k, w in trainer.projection.weights.items()}

    monkeypatch.setattr(kept_repair, "_forget_rose", lambda control, before, after: "")
    monkeypatch.setattr(kept_repair, "_utility_lost", lambda before, after, tolerance: "")
    rate = trainer.optimizer.param_groups[0]["lr"]
    report = kept_repair.repair_kept_examples(trainer, 40)
    assert report.kept and report.flipped == len(flipped) and report.steps > 0
    assert report.fixed >= report.flipped // 2
    still = _wrong_kept(trainer, model)
    assert len(still & flipped) == report.flipped - report.fixed
    assert len(still) < len(flipped)  # its steps may flip an odd other kept example, never as many as they fix
    for key, weight in trainer.projection.weights.items():  # every repair step stayed out of the protected space
        change = weight.detach() - damaged[key]
        assert change.abs().max() > 0
        projector = trainer.projection.projectors[key]
        inside = change - projector.project(change.to(projector.basis.dtype)).to(change.dtype)
        assert inside.abs().max() <= 1e-5 * max(1.0, float(change.abs().max()))
    assert trainer.optimizer.param_groups[0]["lr"] == rate  # the repair's smaller step was its own

    repaired = {k: w.detach().clone() for k, w in trainer.projection.weights.items()}
    monkeypatch.setattr(kept_repair, "_forget_rose", lambda control, before, after: "forget_accuracy rose")
    _damaged(trainer, 1.5)
    again = {k: w.detach().clone() for k, w in trainer.projection.weights.items()}
    undone = kept_repair.repair_kept_examples(trainer, 40)
    assert not undone.kept and "undone (forget_accuracy rose)" in undone.describe()
    for key, weight in trainer.projection.weights.items():  # undone: the weights are exactly those before it
        assert torch.equal(weight.detach(), again[key]) and not torch.equal(again[key], repaired[key])



@pytest.mark.usefixtures("one_thread")
def test_class_removal_and_methods_without_the_original_take_no_repair_step(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.forget import indices_of_classes, split_forget_retain

    train = digits["train"]
    gone, kept = split_forget_retain(train, indices_of_classes(train, [3]))
    for method, kwargs in (("pgu_retain", {}), ("pgu", {})):
        trainer = UnlearningTrainer(model=copy.deepcopy(trained_model), args=make_args(tmp_path / method, method,
                                    **kwargs), forget_dataset=gone, retain_dataset=kept,
                                    eval_dataset=digits["validation"], original_dataset=train)
        trainer.train()
        assert trainer.outcome.unlearned and kept_repair.wants_repair(trainer) == 0
        assert "repair" not in trainer.outcome.reason and "kept examples read" not in trainer.outcome.reason
