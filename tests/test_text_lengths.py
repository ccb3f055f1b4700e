"""Token rows a model cannot read (past its position table, or unpadded rows of different lengths) are refused
before any weight moves."""

import pytest
import torch
from datasets import Dataset
from text_fixtures import marker_token_data, tiny_bert_config
from transformers import (
    BertForSequenceClassification,
    GPT2Config,
    GPT2ForSequenceClassification,
    LlamaConfig,
    LlamaForSequenceClassification,
    RobertaConfig,
    RobertaForSequenceClassification,
)

from hf_unlearn import UnlearningArguments, UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.data.text_lengths import position_limit, token_counts
from hf_unlearn.evaluation import accuracy


def test_the_limit_is_read_from_each_family_s_position_table():
    assert position_limit(BertForSequenceClassification(tiny_bert_config())) == 16
    roberta = RobertaConfig(vocab_size=60, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=34, pad_token_id=1)
    assert position_limit(RobertaForSequenceClassification(roberta)) == 32  # positions start after the padding index
    gpt2 = GPT2Config(vocab_size=60, n_embd=32, n_layer=1, n_head=2, n_positions=24, pad_token_id=0)
    assert position_limit(GPT2ForSequenceClassification(gpt2)) == 24
    llama = LlamaConfig(vocab_size=60, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=16, pad_token_id=0)
    assert position_limit(LlamaForSequenceClassification(llama)) is None  # rotary: no table to overflow


def test_token_counts_follow_a_selection():
    data = Dataset.from_dict({"input_ids": [[1] * n for n in (3, 9, 5, 7)], "labels": [0, 1, 0, 1]})
    assert token_counts(data).tolist() == [3, 9, 5, 7]
    assert token_counts(data.select([3, 0])).tolist() == [7, 3]
    assert token_counts(Dataset.from_dict({"pixel_values": [[0.0]], "labels": [0]})) is None


def _with_a_long_row(data: Dataset, row: int, length: int) -> Dataset:
    rows = data.with_format(None).to_list()
    rows[row] = {**rows[row], "input_ids": [1] + [20] * (length - 1), "attention_mask": [1] * length}
    return Dataset.from_list(rows)


def test_a_retain_row_past_the_positions_is_refused_before_any_weight_moves(tmp_path):
    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config())  # 16 positions
    train = _with_a_long_row(marker_token_data(n=60), row=40, length=20)
    forget, retain = split_forget_retain(train, [0, 1, 2])
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    args = UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, method="pgu_retain")
    with pytest.raises(ValueError, match=r"retain set has 1 of 57 rows longer than the 16 positions.*20 tokens"
                       r".*max_length=16"):
        UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                          eval_dataset=marker_token_data(n=30, seed=1), original_dataset=train)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())

    fits = marker_token_data(n=60, length=16)  # exactly the table: accepted
    forget, retain = split_forget_retain(fits, [0, 1, 2])
    UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                      eval_dataset=marker_token_data(n=30, seed=1), original_dataset=fits)


def test_a_metric_on_rows_past_the_positions_says_so_instead_of_failing_in_the_embeddings():
    model = BertForSequenceClassification(tiny_bert_config())
    data = _with_a_long_row(marker_token_data(n=20), row=7, length=19)
    with pytest.raises(ValueError, match=r"evaluated set has 1 of 20 rows .* \(row 7: 19 tokens\)"):
        accuracy(model, data)


def test_a_long_row_only_in_the_training_set_the_space_is_built_from_is_refused_too(tmp_path):
    model = BertForSequenceClassification(tiny_bert_config())
    train = _with_a_long_row(marker_token_data(n=60), row=40, length=18)
    forget, retain = train.select([0, 1, 2]), train.select(range(3, 40))
    args = UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, method="pgu_retain")
    with pytest.raises(ValueError, match=r"original set has 1 of 60 rows .* \(row 40: 18 tokens\)"):
        UnlearningTrainer(model=model, args=args, forget_dataset=forget, retain_dataset=retain,
                          eval_dataset=marker_token_data(n=30, seed=1), original_dataset=train)


def test_unpadded_rows_of_different_lengths_are_refused_unless_something_pads_them(tmp_path):
    """Without a tokenizer the batches are only stacked: rows of 5 and 6 tokens failed at the first check."""
    from lm_fixtures import word_tokenizer

    texts = ["anna likes red", "bo likes blue skies", "cy likes green", "di likes gold rings", "ed likes tea"] * 4
    tokenizer = word_tokenizer(texts)
    data = Dataset.from_dict({"text": texts, "labels": [i % 3 for i in range(20)]})
    data = data.map(lambda batch: tokenizer(batch["text"]), batched=True).remove_columns("text")
    model = BertForSequenceClassification(tiny_bert_config())
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    forget, retain = split_forget_retain(data, [0, 1])
    args = UnlearningArguments(output_dir=str(tmp_path), disable_tqdm=True, method="pgu_retain")
    sets = {"forget_dataset": forget, "retain_dataset": retain, "eval_dataset": data, "original_dataset": data}
    with pytest.raises(ValueError, match=r"forget set's token rows have 3 to 4 tokens, and nothing pads them.*"
                                         r"processing_class=tokenizer"):
        UnlearningTrainer(model=model, args=args, **sets)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    trainer = UnlearningTrainer(model=model, args=args, processing_class=tokenizer, **sets)  # pads: accepted
    rows = [{k: v for k, v in forget[i].items() if k != "labels"} for i in range(2)]
    assert trainer.base_collator(rows)["input_ids"].shape == (2, 4)  # 3 and 4 tokens, padded to 4
