"""The sample-removal target read on the validation examples nearest the forget set (training/neighbour_target.py)."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from datasets import Dataset
from torch import nn

from hf_unlearn.models.hidden_features import pooled
from hf_unlearn.training.neighbour_target import neighbour_targets


class Probe(nn.Module):
    """Hidden states are the inputs themselves (the middle one scaled by 2); logits are given per row."""

    def __init__(self, hidden: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.hidden = hidden

    def forward(self, features, row_logits, output_hidden_states=False):
        states = (features, 2 * features, features) if self.hidden and output_hidden_states else None
        return SimpleNamespace(logits=row_logits + self.weight, hidden_states=states)


def _rows(features, logits, labels):
    return Dataset.from_dict({"features": features, "row_logits": logits, "labels": labels}).with_format("torch")


def _collate(rows):
    return {k: torch.stack([r[k] for r in rows]) for k in rows[0]}


def test_each_forget_example_reads_its_own_nearest_validation_examples():
    # validation: two groups in direction x (all right, p_true 0.9) and y (all wrong, p_true 0.2); with k = 2
    # every validation example's nearest others are one of each group, as the whole sample is: no correction
    validation = _rows(
        [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]],
        [[2.197, 0.0], [2.197, 0.0], [0.0, 1.386], [0.0, 1.386]],  # softmax: 0.9 / 0.1 and 0.2 / 0.8
        [0, 0, 0, 0],
    )
    along_x = _rows([[3.0, 0.2], [5.0, 0.0]], [[9.0, 0.0], [9.0, 0.0]], [0, 0])
    targets = neighbour_targets(Probe(), along_x, validation, _collate, "cpu", k=2)
    assert targets["validation_accuracy_neighbours"] == pytest.approx(100.0)
    assert targets["validation_probability_neighbours"] == pytest.approx(0.9, abs=1e-3)
    # one forget example per group: the whole sample's own target
    mixed = _rows([[3.0, 0.2], [0.0, 4.0]], [[9.0, 0.0], [9.0, 0.0]], [0, 0])
    targets = neighbour_targets(Probe(), mixed, validation, _collate, "cpu", k=2)
    assert targets["validation_accuracy_neighbours"] == pytest.approx(50.0)
    assert targets["validation_probability_neighbours"] == pytest.approx(0.55, abs=1e-3)


def test_a_hub_that_every_validation_example_picks_does_not_raise_the_target():
    # a (right, 0.9), b (wrong, 0.2), hub h (right, 0.9): a and b both pick h, h picks a -> their neighbours read
    # 100 % / 0.9 against the sample's 66.7 % / 0.667; one forget example like a, one like b read 50 % / 0.55
    validation = _rows([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]], [[2.197, 0.0], [0.0, 1.386], [2.197, 0.0]], [0, 0, 0])
    forget = _rows([[1.0, 0.05], [0.1, 1.0]], [[9.0, 0.0], [9.0, 0.0]], [0, 0])
    targets = neighbour_targets(Probe(), forget, validation, _collate, "cpu", k=1)
    assert targets["validation_accuracy_neighbours"] == pytest.approx(200 / 3 + 50 - 100, abs=1e-3)
    assert targets["validation_probability_neighbours"] == pytest.approx((0.9 + 0.2 + 0.9) / 3 + 0.55 - 0.9, abs=1e-3)


def test_a_model_without_hidden_states_leaves_the_whole_validation_target():
    rows = _rows([[1.0, 0.0]], [[1.0, 0.0]], [0])
    assert neighbour_targets(Probe(hidden=False), rows, rows, _collate, "cpu") == {}


def test_pooling_averages_real_tokens_only_and_feature_maps_over_positions():
    tokens = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    assert torch.equal(pooled(tokens, torch.tensor([[1, 1, 0]])), torch.tensor([[2.0, 2.0]]))
    maps = torch.arange(8.0).reshape(1, 2, 2, 2)
    assert torch.equal(pooled(maps, None), torch.tensor([[1.5, 5.5]]))


def test_the_stop_rule_aims_at_the_neighbours_target_when_it_was_measured():
    from hf_unlearn.control.controller import ControlSettings, UnlearningControl

    start = {"forget_accuracy": 100.0, "validation_accuracy": 85.0, "retain_accuracy": 99.0,
             "validation_accuracy_neighbours": 98.0}
    control = UnlearningControl(ControlSettings(rule="forget_below_validation"), measure=lambda: dict(start))
    assert control.target_validation(start) == 98.0  # the forget set's look-alikes, not the average held-out row
    assert math.isnan(control.target_validation(start, "validation_probability"))  # neither was measured
    del start["validation_accuracy_neighbours"]
    assert control.target_validation(start) == 85.0


def test_the_stop_message_names_the_target_that_was_read():
    from hf_unlearn.control.controller import ControlSettings
    from hf_unlearn.control.stop_rules import target_words

    whole, settings = {"validation_accuracy": 85.0}, ControlSettings(rule="forget_below_validation")
    assert target_words(whole, settings) == "validation accuracy"
    near = {**whole, "validation_accuracy_neighbours": 97.5}
    assert target_words(near, settings) == "validation accuracy on the validation examples nearest the forget set"


def test_a_forget_set_placed_like_the_kept_examples_gets_the_whole_samples_target():
    # kept and forget examples both sit next to the easy example a: their neighbours read alike, no shift
    validation = _rows([[1.0, 0.0], [0.0, 1.0], [1.0, 0.9]], [[2.197, 0.0], [0.0, 1.386], [2.197, 0.0]], [0, 0, 0])
    kept = _rows([[1.0, 0.02]], [[9.0, 0.0]], [0])
    forget = _rows([[1.0, 0.05]], [[9.0, 0.0]], [0])
    targets = neighbour_targets(Probe(), forget, validation, _collate, "cpu", k=1, kept=kept)
    assert targets["validation_accuracy_neighbours"] == pytest.approx(200 / 3, abs=1e-3)
    assert targets["validation_probability_neighbours"] == pytest.approx((0.9 + 0.2 + 0.9) / 3, abs=1e-3)
    # a forget example next to the hard one, against the same kept examples: 100 points lower, clipped at 0
    hard = _rows([[0.05, 1.0]], [[9.0, 0.0]], [0])
    assert neighbour_targets(Probe(), hard, validation, _collate, "cpu", k=1, kept=kept)[
        "validation_accuracy_neighbours"] == 0.0


@pytest.mark.usefixtures("one_thread")
def test_a_run_reads_its_target_on_the_forget_sets_neighbours_and_the_card_says_so(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.forget import random_indices, split_forget_retain

    forget, retain = split_forget_retain(digits["train"], random_indices(len(digits["train"]), 0.1, seed=4))
    runs = {}
    for target in ("validation", "neighbours", "cautious"):
        model = copy.deepcopy(trained_model)
        trainer = UnlearningTrainer(model=model, args=make_args(tmp_path / target, "pgu", sample_removal_target=target),
                                    forget_dataset=forget, retain_dataset=retain, eval_dataset=digits["validation"],
                                    original_dataset=digits["train"])
        trainer.train()
        runs[target] = trainer
    plain = runs["validation"].outcome.initial
    assert "validation_accuracy_neighbours" not in plain
    cautious, near = runs["cautious"].outcome.initial, runs["neighbours"].outcome.initial
    for key in ("validation_accuracy", "validation_probability"):  # the higher of the two readings
        assert cautious[key] == pytest.approx(plain[key]) and near[key] == pytest.approx(plain[key])
        assert cautious[f"{key}_neighbours"] == pytest.approx(max(near[f"{key}_neighbours"], plain[key]))
    summary = runs["cautious"]._measured_summary()
    moved = any(cautious[f"{k}_neighbours"] != cautious[k] for k in ("validation_accuracy", "validation_probability"))
    assert ("nearest the forget set" in summary) == moved


@pytest.mark.usefixtures("one_thread")
def test_the_target_compares_with_the_kept_examples_the_forget_loss_weights_read_once(trained_model, digits, tmp_path,
                                                                                        monkeypatch):
    from digits_models import make_args

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.forget import random_indices, split_forget_retain
    from hf_unlearn.training import neighbour_target

    forget, retain = split_forget_retain(digits["train"], random_indices(len(digits["train"]), 0.1, seed=4))
    reads = []
    real = neighbour_target.middle_features

    def counted(model, dataset, *args, **kwargs):
        reads.append(len(dataset))
        return real(model, dataset, *args, **kwargs)

    monkeypatch.setattr(neighbour_target, "middle_features", counted)
    trainer = UnlearningTrainer(model=copy.deepcopy(trained_model), args=make_args(tmp_path, "pgu_retain"),
                                forget_dataset=forget, retain_dataset=retain, eval_dataset=digits["validation"],
                                original_dataset=digits["train"])
    trainer.train()
    kept = min(len(retain), neighbour_target.BANK_SIZE)
    assert kept > trainer.args.eval_retain_samples  # more kept examples than the guard's sample
    assert reads.count(kept) == 1  # the target's comparison and the forget-loss weights share one read
    assert len(trainer.retain_neighbours.labels) == kept
    # the target is the one computed against those kept examples directly
    sample = retain.shuffle(seed=trainer.args.seed).select(range(kept)) if len(retain) > kept else retain
    forget_rows, _, validation = trainer._check_samples()
    direct = neighbour_targets(trained_model, trainer._memory(forget_rows), trainer._memory(validation),
                               trainer.base_collator, "cpu", kept=sample)
    initial = trainer.outcome.initial
    for key in ("validation_accuracy", "validation_probability"):
        expected = max(direct[f"{key}_neighbours"], initial[key])  # "cautious": the higher of the two readings
        assert initial[f"{key}_neighbours"] == pytest.approx(expected, abs=1e-4)
