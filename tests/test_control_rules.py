"""The step-level control's decisions, driven by scripted measurements (no training, exact outcomes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import TrainerControl, TrainerState

from hf_unlearn.control.controller import ControlSettings, UnlearningControl

START = {"forget_accuracy": 98.0, "validation_accuracy": 90.0, "retain_accuracy": 99.0}


class Script:
    """Returns the queued measurements in order (the first one describes the original)."""

    def __init__(self, *measurements: dict[str, float]):
        self.queue = [START, *measurements]

    def __call__(self) -> dict[str, float]:
        return dict(self.queue.pop(0))


def _run(script: Script, moves: list[float], baseline: dict | None = None, **settings):
    """One step per entry of ``moves`` (added to the weight), a check after each; returns what the run did."""
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    control = UnlearningControl(
        ControlSettings(rule="forget_below_validation", check_every=1, **settings), script
    )
    control.baseline_metrics = baseline
    state, flow = TrainerState(), TrainerControl()
    state.max_steps, state.num_train_epochs = 100, 1
    control.on_train_begin(None, state, flow, model=model)
    for move in moves:
        with torch.no_grad():
            model.weight.add_(move)
        state.global_step += 1
        control.on_step_end(None, state, flow, model=model, optimizer=optimizer)
        if flow.should_training_stop:
            break
    control.on_train_end(None, state, flow)
    return control.outcome, float(model.weight.detach()), optimizer.param_groups[0]["lr"], flow.should_training_stop


def _at(forget: float, validation: float = 89.0) -> dict[str, float]:
    return {"forget_accuracy": forget, "validation_accuracy": validation, "retain_accuracy": 98.5}


def test_an_overshoot_goes_back_and_halves_the_step_instead_of_keeping_the_start():
    # start: 8 points above validation; the first step lands 20 below (overshoot), the halved one 1 below
    outcome, weight, lr, stopped = _run(Script(_at(70.0), _at(89.0)), [1.0, 0.5])
    assert stopped and outcome.overshoots == 1 and outcome.backtracks == 0
    assert weight == pytest.approx(1.5)  # back to the start (1.0), then the smaller step: kept
    assert lr == pytest.approx(0.25) and outcome.learning_rate_scale == pytest.approx(0.5)
    assert outcome.unlearned and outcome.stopped_by == "rule"


def test_a_first_crossing_far_past_the_target_goes_back_to_the_start_even_when_the_start_was_farther():
    # start 8 above the target (90); the first step lands 6 below it, past the 2-point resolution: nearer than the
    # start, but the crossing lies between the two. Back to the start at half the step, whose check lands at 88
    outcome, weight, lr, stopped = _run(Script(_at(84.0), _at(88.0)), [1.0, 0.5])
    assert stopped and outcome.overshoots == 1 and lr == pytest.approx(0.25)
    assert weight == pytest.approx(1.5) and outcome.final["forget_accuracy"] == 88.0 and outcome.unlearned


def test_a_later_crossing_far_past_the_target_halves_from_a_farther_previous_state():
    # 96 (6 above) then 85 (5 below, past the resolution): back to the state at 96, half the step, then 89
    outcome, weight, lr, stopped = _run(Script(_at(96.0), _at(85.0), _at(89.0)), [1.0, 1.0, 0.5])
    assert stopped and outcome.overshoots == 1 and lr == pytest.approx(0.25)
    assert weight == pytest.approx(2.5) and outcome.final["forget_accuracy"] == 89.0


def test_out_of_halvings_the_start_is_never_kept():
    # no halving allowed: the start is closer to the target, but keeping it would remove nothing
    outcome, weight, _, stopped = _run(Script(_at(70.0)), [1.0], max_overshoots=0)
    assert stopped and outcome.overshoots == 0
    assert weight == pytest.approx(2.0) and outcome.unlearned


def test_out_of_halvings_a_closer_earlier_state_is_kept():
    # second check 1 above validation (good, not yet crossed); third 15 below: the earlier state is closer
    outcome, weight, _, stopped = _run(Script(_at(90.0), _at(74.0)), [1.0, 1.0], max_overshoots=0)
    assert stopped and weight == pytest.approx(2.0) and outcome.unlearned
    assert outcome.final["forget_accuracy"] == 90.0


def test_a_damaged_state_is_rolled_back_and_counts_as_a_backtrack_not_an_overshoot():
    damaged = {**_at(40.0), "retain_accuracy": 60.0}
    outcome, weight, lr, stopped = _run(Script(damaged, _at(89.0)), [1.0, 0.5])
    assert stopped and outcome.backtracks == 1 and outcome.overshoots == 0
    assert weight == pytest.approx(1.5) and lr == pytest.approx(0.25)


def test_a_run_that_ends_before_its_stop_rule_is_met_says_the_removal_is_incomplete():
    # the budget (two steps) ends with the forget set still above validation accuracy
    outcome, _, _, stopped = _run(Script(_at(95.0), _at(93.0), _at(93.0)), [0.1, 0.1])
    assert not stopped and outcome.unlearned and outcome.stopped_by == "budget"
    assert "forget accuracy 93.0 has not reached the original model's validation accuracy 90.0" in outcome.incomplete
    # met: nothing to say
    outcome, *_ = _run(Script(_at(89.0)), [0.1])
    assert outcome.unlearned and outcome.incomplete == ""


def test_class_removal_stopped_by_the_guard_names_how_much_of_the_class_is_left():
    start = {"forget_accuracy": 97.0, "forget_probability": 0.9, "retain_accuracy": 99.0}
    halfway = {"forget_accuracy": 54.3, "forget_probability": 0.44, "retain_accuracy": 98.0}
    damaged = {"forget_accuracy": 30.0, "forget_probability": 0.3, "retain_accuracy": 90.0}
    script = Script(halfway, damaged)
    script.queue[0] = start
    model = nn.Linear(1, 1, bias=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    control = UnlearningControl(ControlSettings(rule="class_removal", check_every=1, max_backtracks=0), script)
    state, flow = TrainerState(), TrainerControl()
    state.max_steps, state.num_train_epochs = 100, 1
    control.on_train_begin(None, state, flow, model=model)
    for _ in range(2):
        with torch.no_grad():
            model.weight.add_(1.0)
        state.global_step += 1
        control.on_step_end(None, state, flow, model=model, optimizer=optimizer)
    control.on_train_end(None, state, flow)
    outcome = control.outcome
    assert flow.should_training_stop and outcome.stopped_by == "guard" and outcome.unlearned
    assert "still predicted on 54.3 % of the forget sample" in outcome.incomplete
    assert "mean probability 0.440" in outcome.incomplete


def test_the_sample_removal_target_is_the_original_validation_accuracy_not_one_that_falls_with_damage():
    # validation falls from 90 to 87.5 (within the guard) while forget falls to 88: the old target would be chased
    outcome, weight, _, stopped = _run(Script(_at(88.0, validation=87.5)), [1.0])
    assert stopped and outcome.stopped_by == "rule" and weight == pytest.approx(2.0)
    assert outcome.final["forget_accuracy"] == 88.0


def test_a_crossing_within_the_samples_resolution_stops_at_the_closer_state_without_halving():
    # previous check 0.5 above the target (90), this one 1 below: not an overshoot, keep the closer one and stop
    outcome, weight, lr, stopped = _run(Script(_at(90.5), _at(89.0)), [1.0, 1.0])
    assert stopped and outcome.overshoots == 0 and lr == pytest.approx(0.5)
    assert weight == pytest.approx(2.0) and outcome.final["forget_accuracy"] == 90.5
    # on a sample of 50, two examples are 4 points: a 3-point crossing is within resolution too
    outcome, *_ = _run(Script(_at(90.5), {**_at(87.0), "forget_accuracy_count": 50}), [1.0, 1.0])
    assert outcome.overshoots == 0 and outcome.stopped_by == "rule"


def test_a_rollback_restores_frozen_parameters_too():
    """Class removal moves a frozen output bias outside the optimizer: a rollback must undo that as well."""
    model = nn.Linear(1, 1)
    model.bias.requires_grad_(False)
    with torch.no_grad():
        model.weight.fill_(1.0), model.bias.fill_(0.0)
    script = Script(_at(95.0))  # step 1: fine, not done yet; step 2: a collapse
    script.queue.append({"forget_accuracy": 50.0, "validation_accuracy": 40.0, "retain_accuracy": 40.0})
    optimizer = torch.optim.SGD([model.weight], lr=0.5)
    control = UnlearningControl(ControlSettings(rule="forget_below_validation", check_every=1), script)
    state, flow = TrainerState(), TrainerControl()
    state.max_steps, state.num_train_epochs = 100, 1
    control.on_train_begin(None, state, flow, model=model)
    for step in (1, 2):
        with torch.no_grad():
            model.weight.add_(1.0), model.bias.add_(-5.0 * step)
        state.global_step += 1
        control.on_step_end(None, state, flow, model=model, optimizer=optimizer)
    assert control.outcome.backtracks == 1
    assert float(model.weight) == 2.0 and float(model.bias) == -5.0  # the state after step 1, bias included


def test_a_later_request_of_a_series_is_held_to_the_model_before_the_first():
    # this request starts 2 points below the first model on retain (98.5 vs 100.5 before request 1): a step to 96.0
    # is fine against this request's start (-2.5) but 4.5 below the series' baseline, beyond the 3-point tolerance
    first = {"forget_accuracy": 99.0, "validation_accuracy": 91.0, "retain_accuracy": 100.5}
    step = {"forget_accuracy": 89.0, "validation_accuracy": 90.0, "retain_accuracy": 96.0}
    alone, *_ = _run(Script(dict(step)), [1.0])
    assert alone.backtracks == 0 and alone.stopped_by == "rule"
    anchored, weight, _, _ = _run(Script(dict(step)), [1.0], baseline=first, max_backtracks=0)
    assert anchored.stopped_by == "guard" and weight == pytest.approx(1.0)  # rolled back to the start
    # and the sample-removal target is the first model's validation accuracy (91), not this request's (90)
    crossed, *_ = _run(Script(_at(90.5, validation=89.5)), [1.0], baseline=first)
    assert crossed.stopped_by == "rule"
    not_yet, *_ = _run(Script(_at(90.5, validation=89.5)), [1.0])
    assert not_yet.stopped_by != "rule"


def test_reaching_the_validation_accuracy_exactly_stops_the_run_there():
    # start 98 above validation 89: a check at exactly 89 is the target (no need to cross it and come back)
    outcome, weight, _, stopped = _run(Script(_at(93.0), _at(89.0), _at(80.0)), [1.0, 1.0, 1.0])
    assert stopped and outcome.stopped_by == "rule" and outcome.steps == 2
    assert weight == pytest.approx(3.0) and outcome.final["forget_accuracy"] == 89.0 and outcome.overshoots == 0


def test_a_start_already_at_the_target_stops_after_a_step_never_at_the_start():
    # forget and validation both 100 before the first step: nothing to do is not declared (strictly below is
    # needed for that); the first checked state at the target ends the run, and it is not the start
    start = {"forget_accuracy": 100.0, "validation_accuracy": 100.0, "retain_accuracy": 100.0}
    script = Script(_at(100.0, validation=100.0))
    script.queue[0] = start
    outcome, weight, _, stopped = _run(script, [1.0])
    assert stopped and outcome.steps == 1 and weight == pytest.approx(2.0) and outcome.unlearned


def _conf(forget_acc: float, forget_p: float, validation_p: float = 0.80) -> dict[str, float]:
    return {"forget_accuracy": forget_acc, "forget_probability": forget_p, "validation_accuracy": 89.0,
            "validation_probability": validation_p, "retain_accuracy": 98.5}


def test_forget_confidence_down_to_validation_confidence_stops_before_the_accuracy_does():
    # accuracy still 6 points above validation, but the forget set is now as uncertain as held-out data
    script = Script(_conf(97.0, 0.86), _conf(95.0, 0.79), _conf(80.0, 0.5))
    script.queue[0] = {**START, "forget_probability": 0.95, "validation_probability": 0.80}
    outcome, weight, _, stopped = _run(script, [1.0, 1.0, 1.0])
    assert stopped and outcome.steps == 2 and weight == pytest.approx(3.0) and outcome.overshoots == 0
    assert "confidence" in outcome.reason and outcome.final["forget_accuracy"] == 95.0


def test_a_confidence_already_at_the_target_before_the_first_step_is_not_a_reason_to_stop():
    script = Script(_conf(95.0, 0.70), _conf(89.0, 0.60))
    script.queue[0] = {**START, "forget_probability": 0.75, "validation_probability": 0.80}
    outcome, _, _, stopped = _run(script, [1.0, 1.0])
    assert stopped and outcome.steps == 2 and "accuracy reached" in outcome.reason
    # and a causal LM's settings (confidence_key="") read accuracy/likelihood only
    script = Script(_conf(97.0, 0.70), _conf(89.0, 0.60))
    script.queue[0] = {**START, "forget_probability": 0.95, "validation_probability": 0.80}
    outcome, *_ = _run(script, [1.0, 1.0], confidence_key="")
    assert outcome.steps == 2 and "accuracy reached" in outcome.reason


def test_a_confidence_stop_keeps_its_own_state_even_when_the_accuracy_moved_away():
    # the accuracy has not crossed, so there is no overshoot to undo: the state that met the target is kept
    script = Script(_conf(93.0, 0.86), _conf(95.0, 0.79))
    script.queue[0] = {**START, "forget_probability": 0.95, "validation_probability": 0.80}
    outcome, weight, _, stopped = _run(script, [1.0, 1.0])
    assert stopped and weight == pytest.approx(3.0) and outcome.final["forget_probability"] == 0.79


def test_a_confidence_crossing_far_past_its_target_goes_back_and_halves_the_step():
    # 0.83 -> 0.60 against a target of 0.80: 0.20 past it, 10 times the 2-point resolution; the previous state
    # (0.03 above) was closer. Back there at half the step, whose next check lands at 0.79: kept
    script = Script(_conf(100.0, 0.83), _conf(100.0, 0.60), _conf(100.0, 0.79))
    script.queue[0] = {**START, "forget_probability": 0.95, "validation_probability": 0.80}
    outcome, weight, lr, stopped = _run(script, [1.0, 1.0, 0.5])
    assert stopped and outcome.overshoots == 1 and lr == pytest.approx(0.25)
    assert weight == pytest.approx(2.5) and outcome.final["forget_probability"] == 0.79
    assert "confidence" in outcome.reason


def test_a_confidence_crossing_within_the_resolution_keeps_the_closer_state_without_halving():
    # 0.805 -> 0.785 against 0.80: 0.015 past it, inside the resolution; the previous state was closer: kept
    script = Script(_conf(100.0, 0.805), _conf(100.0, 0.785))
    script.queue[0] = {**START, "forget_probability": 0.95, "validation_probability": 0.80}
    outcome, weight, lr, stopped = _run(script, [1.0, 1.0])
    assert stopped and outcome.overshoots == 0 and lr == pytest.approx(0.5)
    assert weight == pytest.approx(2.0) and outcome.final["forget_probability"] == 0.805


def test_a_probability_reads_the_accuracy_resolution_on_its_own_scale():
    from hf_unlearn.control.stop_rules import crossing_resolution, reading_resolution

    counts = {"forget_accuracy_count": 20, "validation_accuracy_count": 256}
    assert reading_resolution(counts, "forget_accuracy", 80.0) == crossing_resolution(counts, "forget_accuracy", 80.0)
    # 20 forget examples: two examples' worth (10 points) is the floor, 0.10 in probability
    assert reading_resolution(counts, "forget_probability", 0.80) == pytest.approx(0.10)
    many = {"forget_accuracy_count": 400, "validation_accuracy_count": 400}
    # sqrt(0.8 * 0.2 * (1/400 + 1/400)) = 0.02828
    assert reading_resolution(many, "forget_probability", 0.80) == pytest.approx(0.028284, abs=1e-5)


def _stalled_script(*forget_probabilities: float, forget_accuracy: float = 100.0) -> Script:
    """A sample removal whose forget accuracy has not moved; its confidence target (validation's) is 0.97."""
    script = Script(*(_conf(forget_accuracy, p, 0.97) for p in forget_probabilities))
    script.queue[0] = {**START, "forget_probability": 0.9997, "validation_probability": 0.97}
    return script


def test_a_stalled_sample_removal_grows_its_step_up_to_the_cap():
    # log-odds 8.1 -> 7.96 -> 7.82 ...: about 0.15 a check with 4.5 to go (target 0.97): over 8 checks away
    script = _stalled_script(0.99965, 0.9996, 0.99955, 0.9995)
    outcome, _, lr, stopped = _run(script, [0.1] * 4, growth=2.0, max_growths=2)
    assert not stopped and outcome.growths == 2
    assert lr == pytest.approx(0.5 * 4) and outcome.learning_rate_scale == pytest.approx(4.0)
    # the settings' default (1: no growth), which every method but PGU's keeps
    outcome, _, lr, _ = _run(_stalled_script(0.99965, 0.9996), [0.1] * 2)
    assert outcome.growths == 0 and lr == pytest.approx(0.5)


def test_a_grown_step_eases_back_near_the_target_but_never_below_the_base():
    # two growths (x4), then the confidence moves fast and is close: halve, halve, then stay at the base step
    script = _stalled_script(0.99965, 0.9996, 0.98, 0.975, 0.972, 0.9705, forget_accuracy=95.0)
    outcome, _, lr, stopped = _run(script, [0.1] * 6, growth=2.0, max_growths=2)
    assert not stopped and outcome.growths == 2
    assert lr == pytest.approx(0.5) and outcome.learning_rate_scale == pytest.approx(1.0)


def test_no_growth_after_a_rollback_or_without_a_confidence_target_ahead():
    damaged = {**_conf(100.0, 0.99965, 0.97), "retain_accuracy": 80.0}
    script = _stalled_script(0.9996, 0.99955)
    script.queue.insert(1, damaged)
    outcome, _, lr, _ = _run(script, [0.1] * 3, growth=2.0)
    assert outcome.backtracks == 1 and outcome.growths == 0 and lr == pytest.approx(0.25)
    # a confidence moving back up (0.9997 -> 0.9998) is not a stall a larger step would help
    outcome, *_ = _run(_stalled_script(0.9998, 0.99985), [0.1] * 2, growth=2.0)
    assert outcome.growths == 0
    # a forget set already less confident than validation data gives no pace to judge: no growth
    script = _stalled_script(0.9, 0.8999)
    script.queue[0]["forget_probability"] = 0.9
    outcome, *_ = _run(script, [0.1] * 2, growth=2.0)
    assert outcome.growths == 0


def test_a_causal_lm_likelihood_in_percent_is_read_on_its_own_scale():
    # likelihoods 0.995 % -> 0.99 % -> 0.98 % with the validation text at 0.5 %: a slow crawl in log-odds (grow);
    # read as probabilities 0.995 -> 0.99 against 0.5 it would look close and fast (no growth)
    lm = {"forget_key": "forget_likelihood", "validation_key": "validation_likelihood", "confidence_key": ""}

    def at(likelihood):
        return {"forget_likelihood": likelihood, "validation_likelihood": 0.5, "retain_accuracy": 98.5}

    script = Script(at(0.99), at(0.98))
    script.queue[0] = {"forget_likelihood": 0.995, "validation_likelihood": 0.5, "retain_accuracy": 99.0}
    outcome, *_ = _run(script, [0.1] * 2, growth=2.0, **lm)
    assert outcome.growths == 2


def test_the_crossing_resolution_is_the_standard_error_of_two_sampled_accuracies():
    from hf_unlearn.control.stop_rules import crossing_resolution

    counts = {"forget_accuracy_count": 100, "validation_accuracy_count": 256}
    # 100 * sqrt(0.8 * 0.2 * (1/100 + 1/256)) = 100 * sqrt(0.16 * 0.01390625) = 4.7170 by hand
    assert crossing_resolution(counts, "forget_accuracy", 80.0) == pytest.approx(4.7170, abs=1e-3)
    # large samples fall back to two examples' worth, and never below 2 points
    big = {"forget_accuracy_count": 20000, "validation_accuracy_count": 20000}
    assert crossing_resolution(big, "forget_accuracy", 90.0) == pytest.approx(2.0)
    assert crossing_resolution({"forget_accuracy_count": 50}, "forget_accuracy", 90.0) == pytest.approx(4.0)
    # a likelihood averages over every token: the 2-point floor, whatever the counts
    assert crossing_resolution(counts, "forget_likelihood", 30.0) == pytest.approx(2.0)


def test_a_crossing_within_the_standard_error_of_the_samples_is_not_halved():
    # the target is the original's validation accuracy, 90 %: over 100 forget and 256 validation examples the
    # difference has an error of 3.5 points, so a 3-point crossing (87) is the target reached, where two examples'
    # worth (2 points) would have halved
    sized = {"forget_accuracy_count": 100, "validation_accuracy_count": 256}
    outcome, _, lr, stopped = _run(Script({**_at(92.0), **sized}, {**_at(87.0), **sized}), [1.0, 1.0])
    assert stopped and outcome.overshoots == 0 and outcome.stopped_by == "rule" and lr == pytest.approx(0.5)
    # a crossing past it still goes back and halves the step
    outcome, _, lr, _ = _run(Script({**_at(92.0), **sized}, {**_at(80.0), **sized}, {**_at(88.0), **sized}),
                             [1.0, 1.0, 0.5])
    assert outcome.overshoots == 1 and lr == pytest.approx(0.25)
