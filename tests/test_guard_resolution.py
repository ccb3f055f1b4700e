"""The utility guard's resolution: an alarm on the check's small retain sample is re-read on a sample sized from
the tolerance, paired against the start's reading on the same examples, before anything is rolled back."""

from __future__ import annotations

import copy

import pytest
import torch
from digits_models import fit_small_cnn, make_args
from torch import nn
from transformers import TrainerControl, TrainerState

import hf_unlearn.models  # noqa: F401
from hf_unlearn.control.controller import ControlSettings, UnlearningControl
from hf_unlearn.data.builtin import load_digits_dataset
from hf_unlearn.data.forget import random_indices, split_forget_retain
from hf_unlearn.training.measurements import guard_retain_sample
from hf_unlearn.training.trainer import UnlearningTrainer

START = {"forget_accuracy": 98.0, "validation_accuracy": 90.0, "retain_accuracy": 99.0, "retain_accuracy_count": 128}
DIP = {"forget_accuracy": 95.0, "validation_accuracy": 90.0, "retain_accuracy": 95.0, "retain_accuracy_count": 128}


def test_the_sample_is_sized_from_the_tolerance():
    assert guard_retain_sample(3.0) == 600  # 2 * 3^2 / 0.03
    assert guard_retain_sample(1.0) == 1800 and guard_retain_sample(6.0) == 300
    assert guard_retain_sample(3.0, z=2.0) == 267
    with pytest.raises(ValueError, match="tolerance must be positive"):
        guard_retain_sample(0.0)


def _one_dip(closer_look, baseline=None):
    """One step whose check reads a 4-point retain dip on the small sample (tolerance 3), then the run ends."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    readings = [START, DIP, DIP]
    control = UnlearningControl(
        ControlSettings(rule="none", check_every=1), lambda: dict(readings.pop(0)), closer_look=closer_look
    )
    control.baseline_metrics = baseline
    state, flow = TrainerState(), TrainerControl()
    state.max_steps, state.num_train_epochs = 1, 1
    control.on_train_begin(None, state, flow, model=model)
    with torch.no_grad():
        model.weight.add_(1.0)
    state.global_step = 1
    control.on_step_end(None, state, flow, model=model, optimizer=optimizer)
    control.on_train_end(None, state, flow)
    return control.outcome, float(model.weight.detach())


def test_an_alarm_the_larger_sample_does_not_confirm_rolls_nothing_back():
    seen = []

    def clears(start, metrics, alarms):
        seen.append((float(start["weight"]), metrics["retain_accuracy"], list(alarms)))
        return []

    outcome, weight = _one_dip(clears)
    assert weight == 2.0 and outcome.backtracks == 0
    assert outcome.closer_looks == 1 and outcome.cleared_alarms == 1
    assert seen[0][0] == 1.0 and seen[0][1] == 95.0  # it compares against the start weights, for this check
    assert seen[0][2][0].startswith("retain_accuracy 95.0 < 99.0")


def test_an_alarm_the_larger_sample_confirms_rolls_back():
    outcome, weight = _one_dip(lambda start, metrics, alarms: ["retain accuracy 94.0 < 99.0 - 3 (closer look)"])
    assert weight == 1.0 and outcome.backtracks == 1 and outcome.cleared_alarms == 0


def test_without_a_closer_look_or_in_a_series_the_small_sample_decides():
    outcome, weight = _one_dip(None)
    assert weight == 1.0 and outcome.backtracks == 1 and outcome.closer_looks == 0
    # a series of requests is held to the model before the first one, not to this run's start: no paired look
    outcome, weight = _one_dip(lambda *a: [], baseline=dict(START))
    assert weight == 1.0 and outcome.closer_looks == 0


@pytest.fixture(scope="module")
def digits_run():
    torch.set_num_threads(1)
    data = load_digits_dataset(validation_size=0.1).with_format("torch")
    train = data["train"]
    model = fit_small_cnn(train["pixel_values"], train["labels"], epochs=20, lr=2e-3)
    return data, model


def test_the_trainers_closer_look_reads_the_sized_sample_paired_against_the_start(digits_run, tmp_path):
    data, original = digits_run
    forget, retain = split_forget_retain(data["train"], random_indices(len(data["train"]), 0.1, seed=0))
    model = copy.deepcopy(original)
    args = make_args(tmp_path, "gradient_ascent", eval_retain_samples=64)
    trainer = UnlearningTrainer(model, args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=data["validation"])
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer.control_callback.outcome.initial = trainer.control_metrics()
    # the same weights: nothing to confirm, whatever the small sample claimed
    assert trainer.guard_closer_look(start, trainer.control_metrics(), ["retain_accuracy 50.0 < 99.0 - 3"]) == []
    read = trainer._control_samples["utility_retain_600_rest"]
    assert len(read) == min(600, len(retain)) - 64  # the tolerance's 600 examples, the check's 64 reused
    with torch.no_grad():  # wreck the model: the larger sample confirms the drop
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    confirmed = trainer.guard_closer_look(start, trainer.control_metrics(), ["retain_accuracy 50.0 < 99.0 - 3"])
    assert confirmed and confirmed[0].startswith("retain accuracy") and "(closer look)" in confirmed[0]
    # a validation alarm on a validation set the check already reads whole stands as it was, and the look it
    # triggered judges the retain set too, though that had not alarmed on the small sample
    alarm = ["validation_accuracy 10.0 < 90.0 - 3"]
    confirmed = trainer.guard_closer_look(start, trainer.control_metrics(), alarm)
    assert confirmed[-1] == alarm[0] and confirmed[0].startswith("retain accuracy")
