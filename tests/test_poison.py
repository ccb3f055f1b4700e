"""Removing poison: the attack helpers do what they say, and a digits backdoor is unlearned from its rows alone."""

import pytest
import torch
from digits_models import fit_small_cnn, make_args

from hf_unlearn import UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.evaluation import accuracy
from hf_unlearn.evaluation.poison import attack_success_rate, flip_labels, insert_token, plant_backdoor, stamp_patch

TARGET = 0


def test_the_attacks_change_exactly_the_rows_they_name(digits):
    train = digits["train"]
    flipped, rows = flip_labels(train, [(1, 7)], per_class=5, seed=0)
    before, after = train["labels"], flipped["labels"]
    assert len(rows) == 10 and sorted({int(before[r]) for r in rows}) == [1, 7]
    assert all(int(after[r]) == {1: 7, 7: 1}[int(before[r])] for r in rows)
    assert sum(int(a != b) for a, b in zip(before, after, strict=True)) == 10
    planted, rows = plant_backdoor(train, 12, TARGET, seed=0)
    assert len(rows) == 12 and all(int(before[r]) != TARGET for r in rows)
    x, x0 = planted["pixel_values"], train["pixel_values"]
    assert all(torch.equal(x[r], stamp_patch(x0[r])) and int(planted["labels"][r]) == TARGET for r in rows)
    untouched = [i for i in range(len(train)) if i not in set(rows)]
    assert torch.equal(x[untouched], x0[untouched]) and torch.equal(planted["labels"][untouched], before[untouched])
    assert insert_token("win cash", "zqx") == "zqx win cash"
    with pytest.raises(ValueError, match="asked to flip"):
        flip_labels(train, [(1, 7)], per_class=10_000)


def test_a_digits_backdoor_is_unlearned_knowing_only_the_poisoned_rows(digits, tmp_path, one_thread):
    train, rows = plant_backdoor(digits["train"], 60, TARGET, seed=0)
    batch = train[:]
    model = fit_small_cnn(batch["pixel_values"], batch["labels"], epochs=25, lr=3e-3)
    test = digits["test"]
    triggered = test.map(lambda e: {"pixel_values": stamp_patch(e["pixel_values"])})
    clean_before, attack_before = accuracy(model, test), attack_success_rate(model, triggered, TARGET)
    assert attack_before > 60.0, "the backdoor did not take: nothing to test"

    forget, retain = split_forget_retain(train, rows)
    trainer = UnlearningTrainer(model, make_args(tmp_path, "pgu_retain", scenario="poison"), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=digits["validation"], original_dataset=train)
    trainer.train()
    assert trainer.outcome.unlearned and trainer.outcome.reason == "the poisoned examples no longer get their " \
        "poisoned labels"
    assert attack_success_rate(model, triggered, TARGET) < 10.0
    assert accuracy(model, test) >= clean_before - 2.0


def test_flip_pairs_that_share_a_class_are_refused(digits):
    with pytest.raises(ValueError, match="share a class"):
        flip_labels(digits["train"], [(0, 1), (1, 2)], per_class=3)


def test_the_poison_rule_needs_no_validation_set_and_the_sample_rule_does():
    from hf_unlearn.control.stop_rules import resolve_stop_rule

    assert resolve_stop_rule("auto", "poison", True) == "poison_removed"
    assert resolve_stop_rule("poison_removed", "poison", False) == "poison_removed"
    with pytest.raises(ValueError, match="validation"):
        resolve_stop_rule("forget_below_validation", "samples", False)
