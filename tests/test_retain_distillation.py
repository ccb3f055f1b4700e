"""The default path's retain distillation: pgu_retain adds pgu_retain_distill · KL_T(original ‖ model) on the retain
batch (T = 4), over the kept classes in class removal, and never for causal LMs."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hf_unlearn.methods.pgu import pgu_forget_loss
from hf_unlearn.methods.pgu_retain import PGURetain, PGURetainConfig


class Tiny(nn.Module):
    def __init__(self, classes: int = 4):
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(6, classes)

    def forward(self, pixel_values):
        return SimpleNamespace(logits=self.linear(pixel_values))


def _batch(n: int, labels):
    torch.manual_seed(1)
    return {"pixel_values": torch.randn(n, 6), "labels": torch.tensor(labels)}


def _method(model, forgotten=(), causal_lm=False, **config):
    method = PGURetain(PGURetainConfig(**config))
    model.config = SimpleNamespace(num_labels=4)
    method.setup(SimpleNamespace(model=model, forgotten_classes=list(forgotten), causal_lm=causal_lm))
    return method


def _kl(student, teacher, t=4.0):
    p = F.softmax(teacher / t, -1)
    return (p * (p.log() - F.log_softmax(student / t, -1))).sum(-1).mean() * t * t


def test_the_default_adds_four_times_the_distillation_to_the_original():
    model = Tiny()
    method = _method(model)
    assert PGURetainConfig().pgu_retain_distill == 4.0 and method.teacher is not model
    batch = {"forget": _batch(3, [0, 1, 2]), "retain": _batch(5, [0, 1, 2, 3, 0])}
    start = method.compute_loss(None, model, batch)
    plain = pgu_forget_loss(model(batch["forget"]["pixel_values"]).logits, batch["forget"]["labels"]) + F.cross_entropy(
        model(batch["retain"]["pixel_values"]).logits, batch["retain"]["labels"])
    assert float(start) == pytest.approx(float(plain), abs=1e-6)  # at the original the term is zero
    original = copy.deepcopy(model)
    with torch.no_grad():
        model.linear.weight.add_(torch.randn_like(model.linear.weight))
    moved = method.compute_loss(None, model, batch)
    plain = pgu_forget_loss(model(batch["forget"]["pixel_values"]).logits, batch["forget"]["labels"]) + F.cross_entropy(
        model(batch["retain"]["pixel_values"]).logits, batch["retain"]["labels"])
    expected = _kl(model(batch["retain"]["pixel_values"]).logits, original(batch["retain"]["pixel_values"]).logits)
    assert float(expected) > 0.01
    assert float(moved - plain) == pytest.approx(4.0 * float(expected), rel=1e-5)
    # the teacher is frozen: it stayed the original
    assert torch.equal(method.teacher.linear.weight, original.linear.weight)
    assert not any(p.requires_grad for p in method.teacher.parameters())


def test_zero_disables_it_and_spares_the_copy():
    assert _method(Tiny(), pgu_retain_distill=0.0).teacher is None
    assert _method(Tiny(), causal_lm=True).teacher is None  # per-token vocabularies: never distilled
    with pytest.raises(ValueError, match="pgu_retain_distill must be non-negative|non-negative"):
        PGURetainConfig(pgu_retain_distill=-1.0)


def test_class_removal_distils_over_the_kept_classes_only():
    model = Tiny()
    method = _method(model, forgotten=[3])
    batch = {"forget": _batch(2, [3, 3]), "retain": _batch(5, [0, 1, 2, 0, 1])}
    before = method.compute_loss(None, model, batch)
    with torch.no_grad():  # move only the removed class's output row: the kept-class distillation cannot see it
        model.linear.weight[3].add_(5.0)
        model.linear.bias[3].add_(5.0)
    after_forget = pgu_forget_loss(model(batch["forget"]["pixel_values"]).logits, batch["forget"]["labels"],
                                   kept_classes=[0, 1, 2])
    before_forget = pgu_forget_loss(method.teacher(batch["forget"]["pixel_values"]).logits, batch["forget"]["labels"],
                                    kept_classes=[0, 1, 2])
    after = method.compute_loss(None, model, batch)
    assert float(after - after_forget) == pytest.approx(float(before - before_forget), abs=1e-5)
