"""The progress bar shows the stop rule's measure, its target and an ETA at its pace, not the step budget's."""

from types import SimpleNamespace

from digits_models import make_args

from hf_unlearn import UnlearningTrainer
from hf_unlearn.control.progress import NO_BUDGET_ETA, RuleProgress
from hf_unlearn.control.state import ControlSettings
from hf_unlearn.data.forget import random_indices, split_forget_retain


class _Bar:
    def __init__(self):
        self.bar_format, self.postfix = None, []

    def set_postfix_str(self, text):
        self.postfix.append(text)


def _control(rule="forget_below_validation"):
    return SimpleNamespace(settings=ControlSettings(rule=rule), outcome=SimpleNamespace(initial={}),
                           target_validation=lambda initial: 50.0)


def test_the_postfix_reads_the_measure_against_its_target_with_an_eta_from_the_pace():
    bar, clock = _Bar(), iter([100.0, 104.0, 106.0])
    progress = RuleProgress(_control(), lambda: bar)
    import hf_unlearn.control.progress as module

    module.time = SimpleNamespace(perf_counter=lambda: next(clock))
    try:
        progress.on_train_begin(None, SimpleNamespace(global_step=0), None)
        progress.on_step_end(None, SimpleNamespace(global_step=1), None)  # the bar exists from the first step on
        assert bar.bar_format == NO_BUDGET_ETA and "waiting for the first check" in bar.postfix[-1]
        progress.on_log(None, SimpleNamespace(global_step=2), None, logs={"control_forget_accuracy": 90.0})
        assert bar.postfix[-1] == "forget accuracy 90.0 -> 50.0"  # no pace yet
        # 10 points in 2 steps and 4 s: 30 points to go is 6 steps, 12 s
        progress.on_log(None, SimpleNamespace(global_step=4), None, logs={"control_forget_accuracy": 80.0})
        assert bar.postfix[-1] == "forget accuracy 80.0 -> 50.0, ~6 steps (~12 s) at this pace"
        progress.on_log(None, SimpleNamespace(global_step=6), None, logs={"control_forget_accuracy": 49.0})
        assert bar.postfix[-1] == "forget accuracy 49.0 -> 50.0, reached"
    finally:
        import time

        module.time = time


def test_no_rule_leaves_the_bar_alone_and_class_removal_reads_its_own_target():
    bar = _Bar()
    idle = RuleProgress(_control("none"), lambda: bar)
    idle.on_train_begin(None, None, None)
    idle.on_step_end(None, SimpleNamespace(global_step=1), None)
    assert bar.bar_format is None and not bar.postfix
    progress = RuleProgress(_control("class_removal"), lambda: bar)
    progress.on_log(None, SimpleNamespace(global_step=3), None, logs={"control_forget_accuracy": 40.0})
    assert bar.postfix[-1] == "forget accuracy 40.0 -> 1.0"


def test_an_unlearning_run_shows_the_rule_on_its_bar(trained_model, digits, tmp_path, capsys):
    forget, retain = split_forget_retain(digits["train"], random_indices(len(digits["train"]), 0.1, 0))
    args = make_args(tmp_path, method="pgu", disable_tqdm=False)
    trainer = UnlearningTrainer(model=trained_model, args=args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=digits["validation"], original_dataset=digits["train"])
    trainer.train()
    frames = [f for f in capsys.readouterr().err.replace("\r", "\n").splitlines() if "/" in f and "|" in f]
    assert any("stop rule: forget accuracy to reach" in f for f in frames)
    last = frames[-1]
    assert "forget accuracy" in last and " -> " in last  # the measure against its target after the last check
    assert "<" not in last  # tqdm's "elapsed<remaining" (the step budget's time left) is not shown
