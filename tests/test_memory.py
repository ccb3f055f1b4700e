"""What a request holds in memory: one Gram copy, no kept eigenvectors, shared frozen weights in the guard's
copies, and at most three of those at a time; each saving leaves every number as it was."""

from __future__ import annotations

import gc
import weakref

import pytest
import torch
from datasets import Dataset
from torch import nn
from transformers import TrainerControl, TrainerState

import hf_unlearn.control.controller as controller_module
from hf_unlearn.control.controller import ControlSettings, UnlearningControl
from hf_unlearn.control.state import copy_weights, same_bits
from hf_unlearn.core import CoreGradientSpace, LayerProjector, collect_gram_matrices, fingerprint_examples
from hf_unlearn.protection import SpaceProtection, SpaceSettings


class SharedInput(nn.Module):
    """Three layers read one input (as q, k and v do), a fourth reads their sum."""

    def __init__(self):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(6, 5), nn.Linear(6, 5), nn.Linear(6, 5)
        self.out = nn.Linear(5, 3)

    def forward(self, pixel_values):
        return self.out(torch.tanh(self.q(pixel_values) + self.k(pixel_values) + self.v(pixel_values)))


@pytest.fixture
def model_and_data():
    torch.manual_seed(0)
    rows = torch.randn(30, 6, generator=torch.Generator().manual_seed(1))
    return SharedInput(), Dataset.from_dict({"pixel_values": rows.tolist(), "labels": [i % 3 for i in range(30)]})


def _space(model, data):
    return CoreGradientSpace.from_model(model, data, batch_size=7, gamma=0.9, show_progress=False)


def test_projectors_keep_no_eigenvectors_and_equal_those_of_a_kept_decomposition(model_and_data):
    model, data = model_and_data
    space = _space(model, data)
    projectors = space.projectors()
    assert space._vectors == {} and set(space._values) == set(space.layers)  # values only: ranks read them
    assert projectors["q"].basis is projectors["k"].basis is projectors["v"].basis  # one Gram, one rank: one basis
    kept = _space(model, data)
    for name in kept.layers:
        kept.eigen(name)  # the decomposition kept, as before: projectors are cut from it
    for name, info in kept.layers.items():
        expected = LayerProjector.from_eigenbasis(kept.eigen(name)[1], kept.rank(name), info).to("cpu", torch.float32)
        assert torch.equal(projectors[name].basis, expected.basis) and projectors[name].rank == expected.rank
        assert projectors[name].complement == expected.complement
    assert torch.equal(space.basis("q"), kept.basis("q"))  # asked for afterwards: decomposed again, the same


def test_a_request_copy_shares_the_grams_until_the_subtraction_replaces_them(model_and_data):
    model, data = model_and_data
    space = _space(model, data)
    before = {name: gram.clone() for name, gram in space.grams.items()}
    copy = space.request_copy()
    assert all(copy.grams[name] is space.grams[name] for name in space.grams)
    forget = data.select([2, 3, 11])
    stats = collect_gram_matrices(model, forget, show_progress=False)
    copy.subtract(stats, fingerprint_examples(forget, space.fingerprint_columns))
    assert space.ledger == [] and len(copy.ledger) == 1 and copy.num_examples == space.num_examples - 3
    for name in space.grams:
        assert torch.equal(space.grams[name], before[name])  # the original is untouched
        assert torch.equal(copy.grams[name], before[name] - stats.grams[name])  # the same elementwise difference
    assert copy.grams["q"] is copy.grams["k"] is copy.grams["v"]  # equal differences made (and held) once


def test_a_space_built_for_a_request_is_not_kept_beside_its_subtracted_copy(model_and_data):
    model, data = model_and_data
    forget = data.select([0, 4, 9])
    protection = SpaceProtection(SpaceSettings(show_progress=False), original_dataset=data)
    space = protection.prepare(model, forget_model_inputs=forget, forget_dataset=forget, original_model_inputs=data)
    assert protection.space_before_request is None and len(space.ledger) == 1
    protection.revert()  # the run did not unlearn: no space whose ledger lists the request is kept
    assert protection.space is None
    given = _space(model, data)
    protection = SpaceProtection(SpaceSettings(show_progress=False), space=given)
    protection.prepare(model, forget_model_inputs=forget, forget_dataset=forget)
    protection.revert()
    assert protection.space is given and given.ledger == []  # a given space is the caller's: it comes back


def test_a_weight_copy_shares_frozen_tensors_whose_bits_are_unchanged():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)
    with torch.no_grad():
        model.bias.zero_()
    first = copy_weights(model)
    second = copy_weights(model, like=first)
    assert second["bias"] is first["bias"]
    assert second["weight"] is not first["weight"] and torch.equal(second["weight"], first["weight"])
    assert copy_weights(model, like=first, trainable_too=True)["weight"] is first["weight"]
    with torch.no_grad():
        model.bias.neg_()  # -0.0: equal to 0.0 for torch.equal, other bits
    third = copy_weights(model, like=first)
    assert third["bias"] is not first["bias"] and torch.signbit(third["bias"]).all()
    nan = torch.tensor([float("nan")])
    assert same_bits(nan, nan.clone()) and not same_bits(torch.zeros(1), -torch.zeros(1))


def test_the_guard_holds_at_most_three_copies_and_shares_what_no_step_moves(monkeypatch):
    model = nn.Linear(4, 4)
    model.bias.requires_grad_(False)
    made: list[weakref.ref] = []
    alive_before_each: list[int] = []

    def counting(module, like=None, trainable_too=False):
        gc.collect()
        alive_before_each.append(sum(ref() is not None for ref in made))
        copies = copy_weights(module, like, trainable_too)
        made.append(weakref.ref(copies["weight"]))
        return copies

    monkeypatch.setattr(controller_module, "copy_weights", counting)
    metrics = {"forget_accuracy": 90.0, "validation_accuracy": 80.0, "retain_accuracy": 95.0}
    control = UnlearningControl(ControlSettings(rule="none", check_every=1), lambda: dict(metrics))
    state, flow = TrainerState(), TrainerControl()
    state.max_steps, state.num_train_epochs = 100, 1
    control.on_train_begin(None, state, flow, model=model)
    for _ in range(5):
        with torch.no_grad():
            model.weight.add_(0.1)
        state.global_step += 1
        control.on_step_end(None, state, flow, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    control.on_train_end(None, state, flow)
    assert max(alive_before_each[:-1]) == 2  # a check copies beside the start and the previous state only
    start, previous, good = control.start, control.previous_good[1], control.good[1]
    assert previous["bias"] is start["bias"] and good["bias"] is start["bias"]
    assert len({id(start["weight"]), id(previous["weight"]), id(good["weight"])}) == 3
    assert torch.equal(good["weight"], model.weight.detach())


def test_the_lora_aim_decomposes_each_shared_gram_once(model_and_data, monkeypatch):
    from hf_unlearn.protection.lora_aim import forget_directions

    model, data = model_and_data
    space = _space(model, data)
    shapes: list[tuple[int, ...]] = []
    eigh = torch.linalg.eigh

    def counting(matrix, *args, **kwargs):
        shapes.append(tuple(matrix.shape))
        return eigh(matrix, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "eigh", counting)
    forget = collect_gram_matrices(model, data.select([1, 5]), show_progress=False).grams
    for name in ("q", "k", "v"):  # rank and eigenvectors of one shared Gram, read three times
        forget_directions(space, name, forget[name], 2)
    assert shapes.count((6, 6)) == 1  # the whole 6 x 6 Gram: once, not once for the rank and again for the vectors


def test_eval_mode_puts_back_the_models_own_mode_even_after_an_error():
    from hf_unlearn.utils.modes import eval_mode

    for training in (True, False):
        model = torch.nn.Sequential(torch.nn.Dropout(0.5)).train(training)
        with pytest.raises(RuntimeError), eval_mode(model):
            assert not model.training and not model[0].training
            raise RuntimeError("a metric failed halfway")
        assert model.training is training and model[0].training is training
