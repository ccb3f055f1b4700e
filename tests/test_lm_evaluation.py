"""LLM measures on tiny GPT-2 and Llama models built from configs: perplexity, recall, membership signals."""

import math

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

from hf_unlearn.evaluation.lm import (
    membership_auc,
    perplexity,
    rouge_l,
    sequence_scores,
    token_log_probs,
    verbatim_memorization,
)

VOCAB = 50


def _model(family):
    torch.manual_seed(0)
    if family == "gpt2":
        return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                          resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    return LlamaForCausalLM(LlamaConfig(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64))


def _texts(n, length, seed):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(1, VOCAB, (length,), generator=g).tolist()} for _ in range(n)]


def _memorise(model, texts, steps=200):
    ids = torch.tensor([t["input_ids"] for t in texts])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_perplexity_is_the_models_own_loss_and_padding_never_counts(family, one_thread):
    model = _model(family).eval()
    same_length = _texts(4, 12, seed=0)
    ids = torch.tensor([t["input_ids"] for t in same_length])
    with torch.no_grad():
        expected = math.exp(model(input_ids=ids, labels=ids).loss.item())
    assert perplexity(model, same_length) == pytest.approx(expected, rel=1e-5)
    ragged = [{"input_ids": t["input_ids"][: 5 + i]} for i, t in enumerate(_texts(5, 12, seed=1))]
    batched, alone = token_log_probs(model, ragged, batch_size=5), token_log_probs(model, ragged, batch_size=1)
    for a, b, text in zip(batched, alone, ragged, strict=True):
        assert len(a) == len(text["input_ids"]) - 1
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_memorised_texts_are_recalled_and_detected_and_unseen_ones_are_not(family, one_thread):
    trained, unseen = _texts(4, 24, seed=2), _texts(4, 24, seed=3)
    model = _memorise(_model(family), trained)
    recall = verbatim_memorization(model, trained, prefix_tokens=8, continuation_tokens=8)
    assert recall["exact_match"] == 100.0 and recall["rouge_l"] == 1.0 and recall["texts"] == 4
    assert verbatim_memorization(model, unseen, prefix_tokens=8, continuation_tokens=8)["exact_match"] == 0.0
    raw = lambda texts: [" ".join(map(str, t["input_ids"])) for t in texts]  # noqa: E731
    members, held_out = sequence_scores(model, trained, raw(trained)), sequence_scores(model, unseen, raw(unseen))
    for score in ("loss", "zlib", "min_k"):
        assert membership_auc(members, held_out, score) == 1.0
    assert perplexity(model, trained) < 1.5 < perplexity(model, unseen)


def test_scores_and_rouge_by_hand():
    assert rouge_l([1, 2, 3, 4], [1, 3, 4, 5]) == pytest.approx(0.75)  # LCS 1 3 4: P = R = 3/4
    assert rouge_l([1, 2], [3, 4]) == 0.0 and rouge_l([], [1]) == 0.0
    model = _model("gpt2").eval()
    texts = _texts(3, 10, seed=4)
    every = sequence_scores(model, texts, k=1.0)  # min-k over all tokens is the mean loss
    assert every["min_k"] == pytest.approx(every["loss"]) and "zlib" not in every
    some = sequence_scores(model, texts, k=0.2)
    assert (some["min_k"] >= every["loss"]).all()  # the least likely tokens cost more than the average
    with pytest.raises(ValueError, match="zlib score needs raw_texts"):
        membership_auc(every, every, "zlib")
    with pytest.raises(ValueError, match="at least two tokens"):
        perplexity(model, [{"input_ids": [3]}])
    with pytest.raises(ValueError, match="No text has"):
        verbatim_memorization(model, texts, prefix_tokens=8, continuation_tokens=8)


def test_the_membership_auc_module_loads_offline_and_matches_the_function(tmp_path, monkeypatch):
    evaluate = pytest.importorskip("evaluate")
    from hf_unlearn.evaluation import metric_path

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    module = evaluate.load(metric_path("lm_membership_auc"), cache_dir=str(tmp_path))
    members, held_out = [0.1, 0.9, 0.4, 2.0], [0.5, 1.5, 3.0]
    got = module.compute(scores=members + held_out, group=["member"] * 4 + ["held_out"] * 3)
    expected = membership_auc({"loss": np.array(members)}, {"loss": np.array(held_out)})
    assert got["membership_auc"] == pytest.approx(expected) and expected == pytest.approx(9 / 12)  # pairs by hand
    with pytest.raises(ValueError, match="Unknown group"):
        module.compute(scores=[0.1, 0.2], group=["member", "forget"])
