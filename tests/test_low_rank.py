"""A low-rank space: what it keeps is exact, what it drops is bounded, and it survives requests and disk."""

import pytest
import torch
from datasets import Dataset
from torch import nn

from hf_unlearn.core import CoreGradientSpace, collect_gram_matrices, fingerprint_examples
from hf_unlearn.core.low_rank import LowRankGram


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(24, 32)
        self.fc2 = nn.Linear(32, 5)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x)))


def _data(n=300, seed=0):
    """Inputs with a decaying spectrum (what real layers see): a few strong directions, a long weak tail."""
    g = torch.Generator().manual_seed(seed)
    scales = torch.logspace(0, -3, 24)
    x = torch.randn(n, 24, generator=g) * scales
    return Dataset.from_dict({"x": x.tolist(), "labels": [i % 5 for i in range(n)]})


def _space(model, data):
    stats = collect_gram_matrices(model, data.with_format("torch"), show_progress=False,
                                  forward_fn=lambda m, b, d: m(b["x"]))
    return CoreGradientSpace(stats.grams, stats.layers, stats.num_examples, gamma=0.97, energy="sigma2",
                             train_fingerprints=fingerprint_examples(data, data.column_names),
                             fingerprint_columns=data.column_names)


def _forget(model, data, rows):
    forget = data.select(rows)
    stats = collect_gram_matrices(model, forget.with_format("torch"), show_progress=False,
                                  forward_fn=lambda m, b, d: m(b["x"]))
    return stats, fingerprint_examples(forget, data.column_names)


def _retain_gram(model, data, rows):
    kept = data.select([i for i in range(len(data)) if i not in set(rows)])
    stats = collect_gram_matrices(model, kept.with_format("torch"), show_progress=False,
                                  forward_fn=lambda m, b, d: m(b["x"]))
    return stats.grams


def test_a_rank_that_covers_the_spectrum_changes_nothing():
    torch.manual_seed(0)
    model, data = Net(), _data()
    full, compressed = _space(model, data), _space(model, data)
    compressed.compress(rank=32)  # every layer's input width: nothing dropped
    for name in full.layers:
        assert compressed.rank(name) == full.rank(name)
        assert compressed.grams[name].dropped_bound == 0.0
        torch.testing.assert_close(compressed.grams[name].dense(), full.grams[name], rtol=1e-5, atol=1e-6)
        b_full, b_low = full.basis(name), compressed.basis(name)
        torch.testing.assert_close(b_low @ b_low.T, b_full @ b_full.T, rtol=0, atol=1e-5)  # same protected span


@pytest.mark.parametrize("rank", [4, 8])
def test_the_retain_energy_of_a_projected_update_stays_within_the_stated_bound_after_a_request(rank):
    torch.manual_seed(0)
    model, data = Net(), _data()
    space = _space(model, data)
    space.compress(rank=rank)
    assert space.low_rank and space.grams["fc1"].dropped_bound > 0
    rows = list(range(0, 300, 7))
    stats, fingerprints = _forget(model, data, rows)
    space.subtract(stats, fingerprints)
    retain = _retain_gram(model, data, rows)
    projectors = space.projectors(dtype=torch.float64)
    for name, gram in space.grams.items():
        k = space.rank(name)
        assert 0 < k <= rank
        delta = torch.randn(7, gram.shape[0], dtype=torch.float64)
        projected = projectors[name].project(delta)
        # nothing along the kept basis, up to the round-off of its float32 storage (orthonormal to ~1e-7)
        assert (projected @ gram.vectors[:, :k].double()).abs().max() < 1e-6 * delta.abs().max()
        # tr(Δ G_retain Δᵀ) <= ||Δ||_F² (λ_{k+1}(G̃) + dropped_bound), with G_retain from the data itself
        energy = torch.trace(projected @ retain[name] @ projected.T)
        next_value = float(gram.values[k]) if k < gram.rank_kept else 0.0
        bound = projected.pow(2).sum() * (next_value + gram.dropped_bound)
        assert energy <= bound * (1 + 1e-6), name
        # the stated inequality behind it: ||G_retain - G~||_2 <= dropped_bound, and not loosely (within 2x)
        error = torch.linalg.matrix_norm(retain[name] - gram.dense(), ord=2)
        assert error <= gram.dropped_bound * (1 + 1e-6) and error >= 0.5 * gram.dropped_bound, name


def test_layers_sharing_an_input_share_the_compressed_form_through_a_request_and_on_disk(tmp_path):
    from text_fixtures import marker_token_data
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3)).eval()
    data = marker_token_data(n=24)
    space = CoreGradientSpace.from_model(model, data, show_progress=False)
    dense_bytes = space.nbytes()
    space.compress(rank=6)
    q, k, v = (f"bert.encoder.layer.0.attention.self.{x}" for x in ("query", "key", "value"))
    assert isinstance(space.grams[q], LowRankGram) and space.grams[q] is space.grams[k] is space.grams[v]
    assert space.nbytes() < dense_bytes / 2
    forget = data.select(range(3))
    stats = collect_gram_matrices(model, forget.select_columns(["input_ids", "attention_mask"]), show_progress=False)
    space.subtract(stats, space.train_fingerprints[:3])
    assert space.grams[q] is space.grams[v] and len(space.ledger) == 1
    space.save_pretrained(tmp_path / "space")
    loaded = CoreGradientSpace.from_pretrained(tmp_path / "space", model)
    assert loaded.grams[q] is loaded.grams[k]
    for name in space.layers:
        assert loaded.rank(name) == space.rank(name)
        assert torch.equal(loaded.grams[name].vectors, space.grams[name].vectors)
        assert loaded.grams[name].dropped_bound == space.grams[name].dropped_bound
    assert loaded.ledger == space.ledger


def test_the_trainer_unlearns_a_class_with_a_compressed_space_and_keeps_it_compressed(trained_model, digits, tmp_path):
    from hf_unlearn import UnlearningArguments, UnlearningTrainer
    from hf_unlearn.data.forget import indices_of_classes, split_forget_retain
    from hf_unlearn.evaluation import accuracy

    space = CoreGradientSpace.from_model(trained_model, digits["train"], show_progress=False)
    space.compress(rank=24)
    forget, retain = split_forget_retain(digits["train"], indices_of_classes(digits["train"], [3]))
    kept_test = digits["test"].filter(lambda e: int(e["labels"]) != 3)
    before = accuracy(trained_model, kept_test)
    args = UnlearningArguments(output_dir=str(tmp_path / "run"), disable_tqdm=True, report_to="none", seed=0,
                               logging_strategy="no")
    trainer = UnlearningTrainer(trained_model, args, forget_dataset=forget, retain_dataset=retain,
                                eval_dataset=digits["validation"], core_gradient_space=space)
    trainer.train()
    assert trainer.outcome.unlearned and trainer.unlearning_metrics()["eval_forget_accuracy"] <= 5.0
    assert accuracy(trained_model, kept_test) >= before - 3.0
    trainer.save_model()
    saved = CoreGradientSpace.from_pretrained(tmp_path / "run" / "core_gradient_space")
    dense = sum(info.input_dim ** 2 * 8 for info in saved.layers.values())  # float64 d x d per layer
    assert saved.low_rank and len(saved.ledger) == 1
    assert saved.nbytes() == trainer.core_gradient_space.nbytes() < dense / 2


def test_a_stored_rank_below_what_gamma_needs_is_said_out_loud(caplog):
    torch.manual_seed(0)
    model, data = Net(), _data()
    space = _space(model, data)  # gamma 0.97 on sigma2 energy
    needed = space.rank("fc1")
    space.compress(rank=max(1, needed - 2))
    assert space.rank("fc1") == needed - 2 and space.grams["fc1"].kept_share("sigma2") < 0.97
    with caplog.at_level("WARNING", logger="hf_unlearn.core.space"):
        space.projectors()
    assert "caps the protection" in caplog.text and "fc1" in caplog.text


def test_shared_compressed_grams_refuse_forget_grams_that_differ_and_change_nothing():
    from hf_unlearn.core import CGSMismatchError
    from hf_unlearn.core.covariance import GramStatistics

    torch.manual_seed(0)
    model, data = Net(), _data()
    space = _space(model, data)
    space.grams["fc1_twin"] = space.grams["fc1"]  # as q/k/v share one Gram
    space.layers["fc1_twin"] = space.layers["fc1"]
    space.compress(rank=8)
    assert space.grams["fc1_twin"] is space.grams["fc1"]
    stats, fingerprints = _forget(model, data, [0, 1, 2])
    grams = dict(stats.grams)
    grams["fc1_twin"] = grams["fc1"] * 1.5  # the twin's inputs are no longer the same
    before = dict(space.grams)
    with pytest.raises(CGSMismatchError, match="shares its compressed Gram"):
        space.subtract(GramStatistics(grams, {**stats.layers, "fc1_twin": stats.layers["fc1"]}, 3), fingerprints)
    assert all(space.grams[n] is g for n, g in before.items()) and not space.ledger
