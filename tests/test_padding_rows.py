"""Padding tokens are not rows: a text Gram must not depend on how the examples were batched."""

import json

import pytest
import torch
from datasets import Dataset
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForSequenceClassification

from hf_unlearn.core import CGSMismatchError, CoreGradientSpace, collect_gram_matrices, fingerprint_examples
from hf_unlearn.core.storage import sha256_of


def _ragged(n=18, seed=0):
    """Token ids of 3 to 12 tokens: batched together they need padding, one by one they need none."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 13, (n,), generator=g).tolist()
    ids = [[1] + torch.randint(5, 60, (k - 1,), generator=g).tolist() for k in lengths]
    return Dataset.from_dict({"input_ids": ids, "labels": [i % 3 for i in range(n)]})


def _pad(rows):
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r["input_ids"])] = torch.tensor(r["input_ids"])
        mask[i, : len(r["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask}


@pytest.fixture
def bert():
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=60, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=16, num_labels=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)).eval()


def _grams(model, data, batch_size, padding="masked"):
    inputs = data.select_columns(["input_ids"])
    return collect_gram_matrices(model, inputs, batch_size=batch_size, collate_fn=_pad, padding=padding,
                                 show_progress=False)


def _relative(a, b):
    return ((a - b).norm() / b.norm()).item()


def test_masked_grams_do_not_depend_on_the_batching_and_counted_ones_do(bert):
    data = _ragged()
    alone = _grams(bert, data, batch_size=1)  # no padding at all: the truth
    batched = _grams(bert, data, batch_size=6)
    assert batched.padding == "masked"
    for name, gram in alone.grams.items():
        assert _relative(batched.grams[name], gram) < 1e-5, name
    assert batched.num_rows["bert.encoder.layer.0.attention.self.query"] == sum(len(i) for i in data["input_ids"])
    counted = _grams(bert, data, batch_size=6, padding="counted")
    query = "bert.encoder.layer.0.attention.self.query"
    assert _relative(counted.grams[query], alone.grams[query]) > 0.05  # the padding rows were real rows there


def test_the_retain_gram_is_the_total_minus_the_forget_gram_whatever_the_batching(bert):
    data = _ragged(n=24)
    space = CoreGradientSpace(*_args(_grams(bert, data, batch_size=7)),
                              train_fingerprints=fingerprint_examples(data, data.column_names),
                              fingerprint_columns=data.column_names)
    forget = data.select(range(5))
    space.subtract(_grams(bert, forget, batch_size=4), fingerprint_examples(forget, data.column_names))
    retain = _grams(bert, data.select(range(5, 24)), batch_size=1)
    for name, gram in retain.grams.items():
        assert _relative(space.grams[name], gram) < 1e-5, name


def _args(stats):
    return stats.grams, stats.layers, stats.num_examples


def test_a_space_saved_before_masking_counts_padding_and_refuses_masked_forget_grams(bert, tmp_path):
    data = _ragged()
    stats = _grams(bert, data, batch_size=6, padding="counted")
    space = CoreGradientSpace(*_args(stats), padding="counted",
                              train_fingerprints=fingerprint_examples(data, data.column_names),
                              fingerprint_columns=data.column_names)
    space.save_pretrained(tmp_path / "space")
    config_file = tmp_path / "space" / "cgs_config.json"
    config = json.loads(config_file.read_text())
    assert config["padding"] == "counted"
    del config["padding"]  # as written before 2026-12-01
    # a format-5 file: no digest of the config in the tensor file's header
    save_file(load_file(str(tmp_path / "space" / "cgs.safetensors")), str(tmp_path / "space" / "cgs.safetensors"))
    config["format_version"], config["tensors_sha256"] = 5, sha256_of(tmp_path / "space" / "cgs.safetensors")
    config_file.write_text(json.dumps(config))
    old = CoreGradientSpace.from_pretrained(tmp_path / "space")
    assert old.padding == "counted"
    forget = data.select(range(3))
    grams_before = {n: g.clone() for n, g in old.grams.items()}
    with pytest.raises(CGSMismatchError, match="padding"):
        old.subtract(_grams(bert, forget, batch_size=3), fingerprint_examples(forget, data.column_names))
    assert all(torch.equal(old.grams[n], g) for n, g in grams_before.items()) and not old.ledger
    old.subtract(_grams(bert, forget, batch_size=3, padding="counted"), fingerprint_examples(forget, data.column_names))
    assert len(old.ledger) == 1
    with pytest.raises(ValueError, match="padding must be one of"):
        collect_gram_matrices(bert, [], padding="ignored")


def test_evaluation_batches_texts_by_length_and_returns_them_in_the_dataset_order(bert):
    from hf_unlearn.evaluation.predict import collect_outputs, length_order

    data = _ragged(n=20)
    order = length_order(data)
    assert order is not None and [len(data[i]["input_ids"]) for i in order] == sorted(map(len, data["input_ids"]))
    assert length_order(data.select(order)) is None  # already sorted: nothing to do
    def pad_with_labels(rows):
        return {**_pad(rows), "labels": torch.tensor([r["labels"] for r in rows])}

    out = collect_outputs(bert, data, collate_fn=pad_with_labels, batch_size=6)
    for i in range(len(data)):
        alone = bert(**_pad([data[i]])).logits[0]
        torch.testing.assert_close(out["logits"][i], alone, rtol=1e-4, atol=1e-5)
    assert out["labels"].tolist() == data["labels"]


def test_an_encoder_decoder_model_keeps_counting_padding():
    class Seq2Seq(torch.nn.Module):
        config = type("Config", (), {"is_encoder_decoder": True})()

        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 3)

        def forward(self, inputs_embeds, attention_mask):
            return self.proj(inputs_embeds)

    batch = {"inputs_embeds": torch.randn(2, 5, 4), "attention_mask": torch.tensor([[1] * 5, [1, 1, 0, 0, 0]])}
    stats = collect_gram_matrices(Seq2Seq(), [batch], show_progress=False)
    assert stats.padding == "counted" and stats.num_rows["proj"] == 10


def test_texts_are_collected_shortest_first_with_the_same_grams_and_less_padding(bert):
    from hf_unlearn.core.covariance import default_forward, shortest_first

    data = _ragged(n=24, seed=3)
    widths = []

    def recording(model, batch, device):
        widths.append(tuple(batch["input_ids"].shape))
        default_forward(model, batch, device)

    inputs = data.select_columns(["input_ids"])
    sorted_stats = collect_gram_matrices(bert, inputs, batch_size=6, collate_fn=_pad, forward_fn=recording,
                                         show_progress=False)
    lengths = sorted(len(ids) for ids in data["input_ids"])
    assert widths == [(6, lengths[i + 5]) for i in range(0, 24, 6)]  # each batch as wide as its longest, in order
    as_given = [max(len(ids) for ids in data["input_ids"][i:i + 6]) for i in range(0, 24, 6)]
    assert sum(w for _, w in widths) < sum(as_given)  # less padding than in the given order
    alone = _grams(bert, data, batch_size=1)
    for name, gram in alone.grams.items():
        assert _relative(sorted_stats.grams[name], gram) < 1e-5, name
    # counted padding depends on the batches, so its order is left alone; so are equal lengths and non-text data
    widths.clear()
    collect_gram_matrices(bert, inputs, batch_size=6, collate_fn=_pad, forward_fn=recording, padding="counted",
                          show_progress=False)
    assert [w for _, w in widths] == as_given
    same = Dataset.from_dict({"input_ids": [[1, 2, 3]] * 4})
    assert shortest_first(same) is same
    assert [len(ids) for ids in shortest_first(inputs)["input_ids"]] == lengths
