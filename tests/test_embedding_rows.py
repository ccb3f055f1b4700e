"""Input-embedding rows only forget examples read move; every other row stays exactly (protection/embedding_rows.py)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from digits_models import make_args
from transformers import BertConfig, BertForSequenceClassification, GPT2Config, GPT2LMHeadModel

from hf_unlearn import UnlearningTrainer
from hf_unlearn.data.forget import split_forget_retain
from hf_unlearn.evaluation import accuracy
from hf_unlearn.protection.embedding_rows import free_token_rows, input_embedding

pytestmark = pytest.mark.usefixtures("one_thread")
ROWS, SHARED = 120, 20  # token 1 starts every row; tokens 2-3 are shared noise; 20 + i is row i's own name


def _named_rows(n: int = ROWS, seed: int = 0) -> Dataset:
    """Each row: a start token, three shared noise tokens and its own name token; the label is random, so only the
    name tells it (a model that fits the rows memorizes them in their names' embedding rows)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(2, 4, (n, 3), generator=g)  # 8 patterns for 120 rows: they cannot tell rows apart
    ids = torch.cat([torch.ones(n, 1, dtype=torch.long), noise, (SHARED + torch.arange(n))[:, None]], dim=1)
    labels = torch.randint(0, 2, (n,), generator=g)
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist(),
                              "labels": labels.tolist()}).with_format("torch")


def _memorizing_bert(train: Dataset):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=SHARED + ROWS, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=8, num_labels=2, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = train[:]
    for _ in range(300):  # until every row is right, not beyond: a saturated softmax gives no gradient to forget with
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["labels"])
        if bool((out.logits.argmax(-1) == batch["labels"]).all()):
            break
        optimizer.zero_grad()
        out.loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def memorized():
    train = _named_rows()
    model = _memorizing_bert(train)
    assert accuracy(model, train) == 100.0  # the names are all it can go by
    return model, train


def test_the_free_rows_are_the_tokens_only_forget_rows_use():
    train = _named_rows()
    forget, retain = split_forget_retain(train, [3, 7, 50])
    assert free_token_rows(forget, retain) == [SHARED + 3, SHARED + 7, SHARED + 50]


def test_an_embedding_tied_to_the_output_layer_is_never_freed():
    bert = BertForSequenceClassification(BertConfig(vocab_size=30, hidden_size=8, num_hidden_layers=1,
                                                    num_attention_heads=1, intermediate_size=8))
    assert input_embedding(bert) is bert.get_input_embeddings()
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=30, n_embd=8, n_layer=1, n_head=1, n_positions=8))
    assert input_embedding(gpt2) is None  # a row there is also a logit row every kept input reads
    from hf_unlearn.models import SmallCNNConfig, SmallCNNForImageClassification

    assert input_embedding(SmallCNNForImageClassification(SmallCNNConfig(image_size=8))) is None  # no token table


def _unlearn(memorized, tmp_path, **kw):
    base, train = memorized
    model = BertForSequenceClassification(base.config)
    model.load_state_dict(base.state_dict())
    forget, retain = split_forget_retain(train, list(range(0, ROWS, 10)))
    validation = _named_rows(n=60, seed=1)  # other labels for the same names: held-out behaviour is chance
    trainer = UnlearningTrainer(model=model, args=make_args(tmp_path, "auto", **kw), forget_dataset=forget,
                                retain_dataset=retain, eval_dataset=validation, original_dataset=train)
    trainer.train()
    return trainer, model, forget, base


def test_only_the_free_rows_move_and_the_forgotten_names_are_forgotten(memorized, tmp_path):
    trainer, model, forget, base = _unlearn(memorized, tmp_path)
    before, after = base.get_input_embeddings().weight, model.get_input_embeddings().weight
    free = [SHARED + i for i in range(0, ROWS, 10)]
    kept = [t for t in range(before.shape[0]) if t not in free]
    assert torch.equal(after[kept], before[kept])  # bit for bit: no kept input reads a different row
    assert not torch.equal(after[free], before[free])
    assert not after.requires_grad  # frozen again after the run
    assert trainer.outcome.unlearned and accuracy(model, forget) <= 75.0
    assert "12 input-embedding rows of tokens no retain example uses were left free" in trainer._projection_summary()


def test_under_weight_decay_the_kept_rows_are_put_back_after_every_step(memorized, tmp_path):
    trainer, model, forget, base = _unlearn(memorized, tmp_path / "decay", optim="adamw_torch", learning_rate=1e-2,
                                            weight_decay=0.1)
    before, after = base.get_input_embeddings().weight, model.get_input_embeddings().weight
    free = [SHARED + i for i in range(0, ROWS, 10)]
    kept = [t for t in range(before.shape[0]) if t not in free]
    assert torch.equal(after[kept], before[kept])  # AdamW's decay would have shrunk them
    assert not torch.equal(after[free], before[free])


def test_without_free_rows_the_table_never_moves(memorized, tmp_path):
    trainer, model, forget, base = _unlearn(memorized, tmp_path / "off", free_embedding_rows=False)
    assert torch.equal(model.get_input_embeddings().weight, base.get_input_embeddings().weight)
    assert accuracy(model, forget) >= 90.0  # the names hold the memory: without their rows it stays
    assert "input-embedding rows" not in trainer._projection_summary()
