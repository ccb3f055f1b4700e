"""Retain-by-subtraction, thresholds, projection identities, ledger and persistence of the CGS."""

import pytest
import torch
from datasets import Dataset
from torch import nn

from hf_unlearn.core import (
    CGSMismatchError,
    CoreGradientSpace,
    LedgerError,
    collect_gram_matrices,
    energy_rank,
    fingerprint_examples,
    project_out,
)


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.fc = nn.Linear(3 * 4 * 4, 4)

    def forward(self, pixel_values):
        return self.fc(torch.relu(self.conv(pixel_values)).flatten(1))


def _dataset(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return Dataset.from_dict({"pixel_values": x.tolist(), "labels": list(range(n))})


@pytest.fixture
def model_and_data():
    torch.manual_seed(0)
    return Tiny(), _dataset()


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_retain_by_subtraction_equals_direct_retain_gram(model_and_data):
    model, data = model_and_data
    space = CoreGradientSpace.from_model(model, data, batch_size=7, show_progress=False)
    forget_idx = [1, 5, 6, 17, 33]
    forget = data.select(forget_idx)
    retain = data.select([i for i in range(len(data)) if i not in forget_idx])
    space.subtract(
        collect_gram_matrices(model, forget, show_progress=False), fingerprint_examples(forget, data.column_names)
    )
    direct = collect_gram_matrices(model, retain, batch_size=11, show_progress=False)
    for name in space.grams:
        assert _rel(space.grams[name], direct.grams[name]) <= 1e-8
    assert space.num_examples == len(retain)


def test_subtraction_with_a_changed_model_is_not_exact(model_and_data):
    """Why the trainer computes G_forget with the model that built the cache, before any update."""
    model, data = model_and_data
    space = CoreGradientSpace.from_model(model, data, show_progress=False)
    forget = data.select(range(8))
    with torch.no_grad():
        model.conv.weight.add_(0.3 * torch.randn_like(model.conv.weight))
    space.subtract(
        collect_gram_matrices(model, forget, show_progress=False), fingerprint_examples(forget, data.column_names)
    )
    direct = collect_gram_matrices(model, data.select(range(8, 40)), show_progress=False)
    assert _rel(space.grams["conv"], direct.grams["conv"]) < 1e-8  # first layer inputs do not depend on W
    assert _rel(space.grams["fc"], direct.grams["fc"]) > 1e-3


def test_energy_rank_with_both_measures():
    eig = torch.tensor([9.0, 4.0, 1.0, 0.0], dtype=torch.float64)
    assert energy_rank(eig, 0.9, "sigma2") == 2  # 13/14 = 0.93
    assert energy_rank(eig, 0.9, "sigma") == 3  # sigma: 3,2,1 -> 5/6 = 0.83 < 0.9
    assert energy_rank(eig, 1.0, "sigma") == 3
    assert energy_rank(torch.zeros(3, dtype=torch.float64), 0.9) == 0
    with pytest.raises(ValueError, match="energy"):
        energy_rank(eig, 0.9, "sigma3")


def test_projected_update_has_no_component_in_the_space_and_keeps_outputs(model_and_data):
    model, data = model_and_data
    space = CoreGradientSpace.from_model(model, data, gamma=0.9, show_progress=False)
    for name, projector in space.projectors(dtype=torch.float64).items():
        weight = dict(model.named_modules())[name].weight
        delta = torch.randn_like(weight, dtype=torch.float64)
        projected = projector.project(delta)
        basis = space.basis(name)
        assert (projected.reshape(delta.shape[0], -1) @ basis).norm() <= 1e-6 * delta.norm()
    # a Linear layer's outputs on inputs inside the kept space do not change
    layer = nn.Linear(10, 3).double()
    x_kept = torch.randn(50, 2, dtype=torch.float64) @ torch.randn(2, 10, dtype=torch.float64)  # rank-2 inputs
    stats = collect_gram_matrices(nn.Sequential(layer), [x_kept], show_progress=False)
    cgs = CoreGradientSpace({"0": stats.grams["0"]}, stats.layers, 50, gamma=1.0)
    assert cgs.rank("0") == 2
    before = layer(x_kept)
    with torch.no_grad():
        layer.weight += cgs.projectors(dtype=torch.float64)["0"].project(torch.randn(3, 10, dtype=torch.float64))
    assert torch.allclose(layer(x_kept), before, atol=1e-10)


@pytest.mark.parametrize("rank", [1, 7])
def test_complement_basis_gives_the_same_projection(rank):
    from hf_unlearn.core import LayerInfo, LayerProjector

    vectors = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))[0]
    delta = torch.randn(5, 8, dtype=torch.float64)
    projector = LayerProjector.from_eigenbasis(vectors, rank, LayerInfo("linear", (5, 8)))
    assert projector.complement == (rank > 4)
    expected = delta - (delta @ vectors[:, :rank]) @ vectors[:, :rank].T
    assert torch.allclose(projector.project(delta), expected, atol=1e-12)
    transposed = LayerProjector.from_eigenbasis(vectors, rank, LayerInfo("transposed_linear", (8, 5)))
    assert torch.allclose(transposed.project(delta.T), expected.T, atol=1e-12)
    assert torch.allclose(project_out(delta, vectors[:, :rank]), expected, atol=1e-12)


def test_save_load_round_trip_is_exact(tmp_path, model_and_data):
    model, data = model_and_data
    space = CoreGradientSpace.from_model(model, data, gamma=0.8, gamma_overrides={"fc": 0.99}, show_progress=False)
    forget = data.select([3, 4])
    space.subtract(
        collect_gram_matrices(model, forget, show_progress=False), fingerprint_examples(forget, data.column_names)
    )
    space.save_pretrained(tmp_path)
    loaded = CoreGradientSpace.from_pretrained(tmp_path, model)
    for name in space.grams:
        assert torch.equal(loaded.grams[name], space.grams[name])
        assert loaded.rank(name) == space.rank(name)
    assert loaded.gamma_for("fc") == 0.99 and loaded.ledger == space.ledger
    assert torch.equal(loaded.train_fingerprints, space.train_fingerprints)
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pt"))
    looser = CoreGradientSpace.from_pretrained(tmp_path, model, gamma=0.5)
    assert looser.gamma == 0.5 and looser.rank("conv") < space.rank("conv")
    with pytest.raises(TypeError):
        CoreGradientSpace.from_pretrained(tmp_path, model, gama=0.5)  # a typo is an error, not ignored


def test_loading_against_another_model_raises(tmp_path, model_and_data):
    model, data = model_and_data
    CoreGradientSpace.from_model(model, data, show_progress=False).save_pretrained(tmp_path)
    other_weights = Tiny()
    with pytest.raises(CGSMismatchError, match="weights differ"):
        CoreGradientSpace.from_pretrained(tmp_path, other_weights)
    other_arch = nn.Sequential(nn.Linear(3, 3))
    with pytest.raises(CGSMismatchError, match="does not have"):
        CoreGradientSpace.from_pretrained(tmp_path, other_arch)
    wider = Tiny()
    wider.fc = nn.Linear(48, 5)
    with pytest.raises(CGSMismatchError, match="shape"):
        CoreGradientSpace.from_pretrained(tmp_path, wider)


def test_ledger_refuses_repeats_unknown_and_empty_requests(model_and_data):
    model, data = model_and_data
    space = CoreGradientSpace.from_model(model, data, show_progress=False)
    cols = data.column_names
    forget = data.select([0, 1])
    stats = collect_gram_matrices(model, forget, show_progress=False)
    space.subtract(stats, fingerprint_examples(forget, cols))
    grams_after_first = {k: v.clone() for k, v in space.grams.items()}
    with pytest.raises(LedgerError, match="already forgotten"):
        space.subtract(stats, fingerprint_examples(forget, cols))
    with pytest.raises(LedgerError, match="empty"):
        space.check_request(torch.zeros(0, dtype=torch.int64))
    stranger = _dataset(n=2, seed=99)
    with pytest.raises(LedgerError, match="not in the data"):
        space.check_request(fingerprint_examples(stranger, cols))
    for name in space.grams:  # refused requests changed nothing
        assert torch.equal(space.grams[name], grams_after_first[name])
    assert len(space.ledger) == 1


def test_duplicate_training_rows_can_each_be_forgotten_once():
    rows = Dataset.from_dict({"x": [[1.0, 2.0], [1.0, 2.0], [0.0, 1.0]], "labels": [0, 0, 1]})
    model = nn.Sequential(nn.Linear(2, 2))
    space = CoreGradientSpace.from_model(model, rows, show_progress=False, forward_fn=lambda m, b, d: m(b["x"]))
    one = rows.select([0])
    for _ in range(2):
        space.subtract(
            collect_gram_matrices(model, one, forward_fn=lambda m, b, d: m(b["x"]), show_progress=False),
            fingerprint_examples(one, rows.column_names),
        )
    with pytest.raises(LedgerError, match="already forgotten"):
        space.check_request(fingerprint_examples(one, rows.column_names))


def test_fingerprints_do_not_depend_on_the_format():
    data = _dataset(n=3)
    plain = fingerprint_examples(data, data.column_names)
    as_torch = fingerprint_examples(data.with_format("torch"), data.column_names)
    assert torch.equal(plain, as_torch) and plain.unique().numel() == 3


def test_fingerprints_survive_a_renamed_label_column(trained_model, digits):
    """A space built on 'labels' accepts a request whose dataset calls the column 'label' (and vice versa)."""
    from hf_unlearn.protection import forget_fingerprints

    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    assert "labels" in space.fingerprint_columns
    renamed = digits["train"].select(range(5)).rename_column("labels", "label")
    fps = forget_fingerprints(renamed, space.fingerprint_columns, "The cache", space.fingerprint_key())
    assert torch.equal(fps, fingerprint_examples(digits["train"].select(range(5)), space.fingerprint_columns))
    space.check_request(fps)  # known examples, not "unknown"


def test_the_overlap_check_reads_a_renamed_label_column(trained_model, digits, tmp_path):
    from digits_models import make_args

    from hf_unlearn import UnlearningTrainer
    from hf_unlearn.data.forget import split_forget_retain

    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    renamed = digits["train"].rename_column("labels", "label")
    forget, retain = split_forget_retain(renamed, [0, 1, 2])
    trainer = UnlearningTrainer(model=trained_model, args=make_args(tmp_path), forget_dataset=forget,
                                retain_dataset=retain, core_gradient_space=space)
    assert len(trainer.forget_dataset) == 3
    with pytest.raises(ValueError, match="also in the retain set"):
        UnlearningTrainer(model=trained_model, args=make_args(tmp_path), forget_dataset=forget,
                          retain_dataset=renamed, core_gradient_space=space)


def test_layers_that_share_an_input_keep_one_gram_in_memory_and_on_disk(tmp_path):
    from safetensors import safe_open
    from text_fixtures import marker_token_data
    from transformers import BertConfig, BertForSequenceClassification

    from hf_unlearn.core.covariance import GramStatistics

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3)).eval()
    data = marker_token_data(n=24)
    space = CoreGradientSpace.from_model(model, data, show_progress=False)
    q, k, v = (f"bert.encoder.layer.0.attention.self.{x}" for x in ("query", "key", "value"))
    context = "bert.encoder.layer.0.attention.output.dense"
    assert space.grams[q] is space.grams[k] is space.grams[v]
    assert space.grams[context] is not space.grams[q]
    # the shared Gram is the one computed from the layer's inputs directly (equality checked, not assumed)
    hidden = model.bert.embeddings(input_ids=data[:]["input_ids"]).reshape(-1, 16).double()
    torch.testing.assert_close(space.grams[k], hidden.T @ hidden, rtol=1e-10, atol=1e-9)
    space.save_pretrained(tmp_path / "space")
    with safe_open(str(tmp_path / "space" / "cgs.safetensors"), "pt") as handle:
        keys = set(handle.keys())
    assert f"gram.{q}" in keys and f"gram.{k}" not in keys and f"gram.{v}" not in keys
    loaded = CoreGradientSpace.from_pretrained(tmp_path / "space", model)
    assert loaded.grams[k] is loaded.grams[q] and torch.equal(loaded.grams[v], space.grams[v])
    assert loaded.rank(k) == space.rank(q) and torch.equal(loaded.basis(v), space.basis(q))
    # a request keeps the sharing, and each layer's Gram is what a per-layer subtraction gives
    forget = CoreGradientSpace.from_model(model, data.select(range(3)), show_progress=False)
    expected = {name: space.grams[name] - forget.grams[name] for name in space.grams}
    stats = GramStatistics(grams=dict(forget.grams), layers=dict(forget.layers), num_examples=3)
    space.subtract(stats, space.train_fingerprints[:3])
    assert space.grams[q] is space.grams[v]
    for name, gram in expected.items():
        assert torch.equal(space.grams[name], gram), name
