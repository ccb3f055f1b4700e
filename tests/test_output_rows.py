"""Class removal: the forgotten classes' logit rows are left unprojected, every other update is projected."""

import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    ResNetConfig,
    ResNetForImageClassification,
    ViTConfig,
    ViTForImageClassification,
)

from hf_unlearn.core import LayerInfo, LayerProjector, find_protectable_layers
from hf_unlearn.protection import ProjectedUpdates
from hf_unlearn.protection.output_rows import find_output_layer


def _projector(dim, rank, kind="linear", out=5, seed=0):
    generator = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    shape = (dim, out) if kind == "transposed_linear" else (out, dim)
    return LayerProjector.from_eigenbasis(basis, rank, LayerInfo(kind, shape)), basis[:, :rank]


@pytest.mark.parametrize("kind, rank", [("linear", 3), ("linear", 7), ("transposed_linear", 3)])
def test_freed_rows_get_the_raw_update_and_the_others_none_in_the_protected_space(kind, rank):
    projector, protected = _projector(8, rank, kind)
    transposed = kind == "transposed_linear"
    weight = nn.Parameter(torch.randn((8, 5) if transposed else (5, 8), dtype=torch.float64))
    updates = ProjectedUpdates({"head": projector}, {"head": ("head", weight, transposed)})
    updates.leave_unprojected("head", [1, 3])
    start = weight.detach().clone()
    step = torch.randn_like(weight)
    updates.snapshot()
    with torch.no_grad():
        weight.add_(step)
    updates.project()
    delta = weight.detach() - start
    outputs = delta.T if transposed else delta  # one row per output unit
    raw = step.T if transposed else step
    torch.testing.assert_close(outputs[[1, 3]], raw[[1, 3]])
    assert (outputs[[0, 2, 4]] @ protected).abs().max() < 1e-12
    assert (raw[[0, 2, 4]] @ protected).abs().max() > 1e-3  # the projection had something to remove


def test_output_units_that_do_not_exist_are_refused():
    projector, _ = _projector(8, 3)
    weight = nn.Parameter(torch.zeros(5, 8, dtype=torch.float64))
    updates = ProjectedUpdates({"head": projector}, {"head": ("head", weight, False)})
    with pytest.raises(ValueError, match="do not exist"):
        updates.leave_unprojected("head", [5])
    with pytest.raises(ValueError, match="do not exist"):
        updates.leave_unprojected("head", [])


def _resnet():
    return ResNetForImageClassification(
        ResNetConfig(num_channels=1, embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], num_labels=4)
    )


def _vit():
    return ViTForImageClassification(
        ViTConfig(
            image_size=8,
            patch_size=4,
            num_channels=1,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=4,
        )
    )


def _bert():
    return BertForSequenceClassification(
        BertConfig(
            vocab_size=30,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            num_labels=4,
        )
    )


def _gpt2():  # classifies at the last token: the logits are one position of the score layer's output
    return GPT2ForSequenceClassification(
        GPT2Config(vocab_size=30, n_embd=16, n_layer=1, n_head=2, n_positions=8, num_labels=4, pad_token_id=0)
    )


@pytest.mark.parametrize(
    "build, inputs, head",
    [
        (_resnet, {"pixel_values": torch.randn(2, 1, 16, 16)}, "classifier.1"),
        (_vit, {"pixel_values": torch.randn(2, 1, 8, 8)}, "classifier"),
        (_bert, {"input_ids": torch.randint(0, 30, (2, 6))}, "classifier"),
        (_gpt2, {"input_ids": torch.tensor([[5, 6, 7, 0], [5, 6, 7, 8]])}, "score"),
    ],
)
def test_the_output_layer_is_the_one_whose_output_is_the_logits(build, inputs, head):
    torch.manual_seed(0)
    model = build()
    candidates = find_protectable_layers(model)
    assert head in candidates
    assert find_output_layer(model, candidates, {**inputs, "labels": torch.zeros(2, dtype=torch.long)}) == head


class _ScaledLogits(nn.Module):
    """Logits that are not any layer's output (a temperature after the head): no row may be freed."""

    def __init__(self):
        super().__init__()
        self.body, self.head = nn.Linear(4, 4), nn.Linear(4, 3)

    def forward(self, x):
        class Out:
            logits = self.head(torch.relu(self.body(x))) / 2.0

        return Out()


def test_no_output_layer_when_the_logits_are_computed_after_the_last_layer():
    model = _ScaledLogits()
    candidates = {"body": model.body, "head": model.head}
    assert find_output_layer(model, candidates, {"x": torch.randn(3, 4), "labels": torch.zeros(3)}) is None


def test_a_free_update_that_raises_the_class_on_the_mean_kept_input_is_offset_through_the_bias():
    projector, _ = _projector(8, 3)
    weight = nn.Parameter(torch.zeros(3, 8, dtype=torch.float64))
    bias = nn.Parameter(torch.zeros(3, dtype=torch.float64), requires_grad=False)
    kept_mean = torch.ones(8, dtype=torch.float64)
    updates = ProjectedUpdates({"head": projector}, {"head": ("head", weight, False)})
    updates.leave_unprojected("head", [0, 2], kept_mean=kept_mean, bias=bias)
    step = torch.zeros(3, 8, dtype=torch.float64)
    step[0] = 0.5  # raises output 0 on the mean kept input by 4
    step[2] = -0.25  # lowers output 2 by 2: left alone
    step[1] = 1.0  # a projected row: never offset
    updates.snapshot()
    with torch.no_grad():
        weight.add_(step)
    updates.project()
    torch.testing.assert_close(bias.detach(), torch.tensor([-4.0, 0.0, 0.0], dtype=torch.float64))
    change = weight.detach() @ kept_mean + bias.detach()  # output change on the mean kept input
    assert change[0].abs() < 1e-12 and change[2] == pytest.approx(-2.0)
