"""The forget loss's per-example weights from the kept examples nearest each forgotten one
(methods/neighbour_weights.py, read by PGU's margin term; the bank is built in training/neighbour_target.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from hf_unlearn.methods.neighbour_weights import FLOOR, RetainNeighbours, weighted_mean
from hf_unlearn.methods.pgu import pgu_forget_loss


def _bank(k: int = 2) -> RetainNeighbours:
    # two kept examples of class 0 along x, two of class 1 along y, one of class 1 close to x
    features = torch.tensor([[1.0, 0.0], [2.0, 0.1], [0.0, 1.0], [0.1, 3.0], [1.0, 0.3]])
    return RetainNeighbours(features, torch.tensor([0, 0, 1, 1, 1]), k=k)


def test_agreement_is_the_share_of_the_nearest_kept_examples_that_carry_the_label():
    bank = _bank(k=2)
    query = torch.tensor([[5.0, 0.0], [0.0, 2.0], [5.0, 0.0], [1.0, 0.28]])
    labels = torch.tensor([0, 0, 1, 0])
    # (5, 0): nearest (2, 0.1) and (1, 0) -> both 0; (0, 2): both 1; (1, 0.28): (1, 0.3) of class 1 and (2, 0.1)
    assert torch.equal(bank.agreement(query, labels), torch.tensor([1.0, 0.0, 0.0, 0.5]))
    assert torch.equal(_bank(k=5).agreement(query[:1], labels[:1]), torch.tensor([0.4]))  # every kept example


def test_weights_read_the_middle_hidden_state_and_never_carry_a_gradient():
    bank = _bank(k=1)
    along_x = torch.tensor([[4.0, 0.0]], requires_grad=True)
    along_y = torch.tensor([[0.0, 4.0]])
    labels = torch.tensor([0])
    # three states: the middle one (index 1) decides; the others point the other way
    weights = bank.weights((along_y, along_x, along_y), {}, labels)
    assert torch.equal(weights, torch.tensor([FLOOR]))  # its nearest kept example agrees
    assert not weights.requires_grad
    assert torch.equal(bank.weights((along_x, along_y, along_x), {}, labels), torch.tensor([1.0 + FLOOR]))


def test_the_margin_term_of_each_row_is_weighted_and_equal_weights_change_nothing():
    logits = torch.tensor([[2.0, 0.0, -1.0], [2.0, 0.0, -1.0], [0.5, 1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([0, 0, 1])
    plain = pgu_forget_loss(logits, labels)
    assert torch.allclose(pgu_forget_loss(logits, labels, weights=torch.full((3,), 0.3)), plain)
    weights = torch.tensor([0.05, 1.05, 0.5])
    loss = pgu_forget_loss(logits, labels, entropy_weight=0.0, weights=weights)
    p_true = logits.softmax(-1).gather(1, labels[:, None]).squeeze(1)
    by_hand = (weights * -torch.log1p(-(p_true - 0.05))).sum() / weights.sum()
    assert torch.allclose(loss, by_hand)
    # rows 0 and 1 are the same example: their logit gradients stand in the ratio of their weights
    (grad,) = torch.autograd.grad(loss, logits)
    assert torch.allclose(grad[1], grad[0] * (1.05 / 0.05), rtol=1e-5)
    assert weighted_mean(torch.tensor([1.0, 3.0]), None) == 2.0


def test_a_bank_refuses_mismatched_or_empty_rows():
    with pytest.raises(ValueError, match="must match"):
        RetainNeighbours(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="at least one"):
        RetainNeighbours(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long))


@pytest.mark.usefixtures("one_thread")
def test_a_sample_removal_weighs_its_forget_loss_by_the_kept_neighbours(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.forget import indices_of_classes, random_indices, split_forget_retain

    train = digits["train"]
    forget, retain = split_forget_retain(train, random_indices(len(train), 0.1, seed=4))

    def trainer(forget, retain, out, **kwargs):
        return UnlearningTrainer(model=copy.deepcopy(trained_model), args=make_args(tmp_path / out, "pgu_retain",
                                 **kwargs), forget_dataset=forget, retain_dataset=retain,
                                 eval_dataset=digits["validation"], original_dataset=train)

    run = trainer(forget, retain, "weighted")
    run.train()
    bank = run.method.neighbours
    assert bank is run.retain_neighbours and len(bank.labels) == len(retain)  # fewer than BANK_SIZE: all of them
    assert torch.equal(bank.labels.sort().values, torch.as_tensor(retain["labels"]).sort().values)
    assert torch.allclose(bank.features.norm(dim=1), torch.ones(len(retain)))
    # digits barely memorize: a forgotten digit sits among kept digits of its own class, most weights at the floor
    forget_rows = forget[:]
    hidden = run.model(pixel_values=forget_rows["pixel_values"], output_hidden_states=True).hidden_states
    weights = bank.weights(hidden, {}, torch.as_tensor(forget_rows["labels"]))
    assert (weights <= FLOOR + 0.5).float().mean() > 0.8 and weights.max() <= 1.0 + FLOOR

    off = trainer(forget, retain, "uniform", pgu_neighbour_weights=False)
    off.train()
    assert off.method.neighbours is None and off.retain_neighbours is None

    gone, kept = split_forget_retain(train, indices_of_classes(train, [3]))
    whole_class = trainer(gone, kept, "class")
    whole_class.train()
    assert whole_class.method.neighbours is None  # class removal pushes every example of the class
