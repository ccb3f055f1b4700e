"""The Gram built by hooks must equal RᵀR built directly from the inputs each layer multiplies."""

import logging

import pytest
import torch
from torch import nn

from hf_unlearn.core import collect_gram_matrices, find_protectable_layers, input_rows
from hf_unlearn.core.layers import UnsupportedLayerError


def _reference_gram(rows: torch.Tensor) -> torch.Tensor:
    rows = rows.double()
    return rows.T @ rows


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_linear_with_token_axis_matches_direct_gram():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))
    batches = [torch.randn(4, 7, 6) for _ in range(3)]  # (B, T, d): every token is a row
    stats = collect_gram_matrices(model, batches, show_progress=False)
    x = torch.cat(batches).reshape(-1, 6)
    assert _rel(stats.grams["0"], _reference_gram(x)) < 1e-12
    hidden = torch.tanh(model[0](x))
    assert _rel(stats.grams["2"], _reference_gram(hidden)) < 1e-6  # float32 activations
    assert stats.num_examples == 12 and stats.num_rows["0"] == 12 * 7


@pytest.mark.parametrize(
    "conv_kwargs",
    [
        dict(kernel_size=(3, 2), stride=2, padding=1, dilation=2),
        dict(kernel_size=3, stride=1, padding="same", dilation=2),
        dict(kernel_size=(2, 3), stride=(1, 2), padding=(2, 1), padding_mode="reflect"),
    ],
)
def test_conv2d_patches_match_the_convolution(conv_kwargs):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, **conv_kwargs, bias=False)
    x = torch.randn(2, 3, 9, 10)
    rows = input_rows(conv, x)
    out = conv(x)  # (B, out, H, W): rows @ Wᵀ must reproduce it, in the same patch order
    direct = (rows @ conv.weight.reshape(4, -1).T).reshape(2, -1, 4).transpose(1, 2)
    assert torch.allclose(direct, out.reshape(2, 4, -1), atol=1e-5)
    stats = collect_gram_matrices(nn.Sequential(conv), [x], show_progress=False)
    assert _rel(stats.grams["0"], _reference_gram(rows)) < 1e-12


def test_conv1d_patches_match_the_convolution():
    conv = nn.Conv1d(2, 3, kernel_size=3, stride=2, padding=1, dilation=2, bias=False)
    x = torch.randn(2, 2, 11)
    rows = input_rows(conv, x)
    direct = (rows @ conv.weight.reshape(3, -1).T).reshape(2, -1, 3).transpose(1, 2)
    assert torch.allclose(direct, conv(x), atol=1e-5)


def test_transformers_conv1d_uses_its_input_rows():
    from transformers.pytorch_utils import Conv1D

    torch.manual_seed(2)
    layer = Conv1D(nf=5, nx=4)  # GPT-2 style: weight is (in, out)
    model = nn.Sequential(layer)
    x = torch.randn(3, 6, 4)
    stats = collect_gram_matrices(model, [x], show_progress=False)
    assert stats.layers["0"].kind == "transposed_linear" and stats.layers["0"].input_dim == 4
    assert _rel(stats.grams["0"], _reference_gram(x.reshape(-1, 4))) < 1e-12


def test_shared_inputs_are_counted_for_every_layer():
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            return self.q(x) + self.k(x) + self.v(x)

    model = Attention()
    x = torch.randn(5, 4)
    stats = collect_gram_matrices(model, [x, x.clone() * 2], show_progress=False)
    expected = _reference_gram(torch.cat([x, 2 * x]))
    for name in "qkv":
        assert _rel(stats.grams[name], expected) < 1e-12


def test_layer_selection_patterns_and_grouped_convs():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 4, 5, 5))
    assert list(find_protectable_layers(model)) == ["2"]  # the grouped conv is skipped by default
    with pytest.raises(UnsupportedLayerError, match="groups=2"):
        find_protectable_layers(model, include=["0"])
    with pytest.raises(UnsupportedLayerError, match="No protectable layer"):
        find_protectable_layers(model, include=["nothing*"])
    with pytest.raises(UnsupportedLayerError):
        find_protectable_layers(model, include=["2"], exclude=["2"])


def test_grouped_convolutions_left_out_are_named_with_their_share_and_stay_frozen(caplog):
    from hf_unlearn.protection.freezing import freeze_parameters

    # grouped conv weight 4 × (4/2) × 3 × 3 = 72, the Linear 2 × 36 = 72: half of the layers' weights
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 4, 5, 5))
    with caplog.at_level(logging.WARNING, logger="hf_unlearn"):
        find_protectable_layers(model)
    assert "1 of the 2 Linear/Conv layers of Sequential are grouped convolutions (50 %" in caplog.text
    assert "the first: '0'" in caplog.text and "stay frozen" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hf_unlearn"):
        freeze_parameters(model, protected_layers={"2"}, freeze_bias_and_norm=True, train_unprotected=False)
    assert not model[0].weight.requires_grad and model[2].weight.requires_grad
    assert "grouped convolutions (50 %" in caplog.text
    caplog.clear()  # without grouped convolutions: no word
    plain = nn.Sequential(nn.Conv2d(4, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    plain(torch.randn(1, 4, 5, 5))
    with caplog.at_level(logging.WARNING, logger="hf_unlearn"):
        find_protectable_layers(plain)
        freeze_parameters(plain, protected_layers={"2"}, freeze_bias_and_norm=True, train_unprotected=False)
    assert "grouped" not in caplog.text


def test_hooks_are_removed_even_when_the_forward_fails():
    model = nn.Sequential(nn.Linear(3, 2))

    def broken(batches):
        yield torch.randn(2, 3)
        raise RuntimeError("data went away")

    with pytest.raises(RuntimeError, match="data went away"):
        collect_gram_matrices(model, broken(None), show_progress=False)
    assert not model[0]._forward_hooks


def test_float32_products_are_close_to_float64():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(16, 4))
    batches = [torch.randn(32, 16) for _ in range(4)]
    exact = collect_gram_matrices(model, batches, show_progress=False).grams["0"]
    fast = collect_gram_matrices(model, batches, precision="float32", show_progress=False).grams["0"]
    assert _rel(fast, exact) < 1e-5


def test_text_and_id_columns_of_a_dataset_are_not_passed_to_the_model():
    from datasets import Dataset

    class Model(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):  # would fail on an unexpected keyword such as "text"
            return self.fc(x)

    data = Dataset.from_dict({"x": [[1.0, 0.0, 2.0]] * 4, "text": ["a", "b", "c", "d"], "labels": [0, 1, 0, 1]})
    stats = collect_gram_matrices(Model(), data.with_format("torch"), batch_size=2, show_progress=False)
    expected = _reference_gram(torch.tensor([[1.0, 0.0, 2.0]] * 4))
    assert torch.allclose(stats.grams["fc"], expected) and stats.num_examples == 4
