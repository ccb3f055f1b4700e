"""Tiny text data and classifiers, built offline in seconds.

Token-level: sentences of random ids whose class is a marker token, and the 2-layer BERT the text, PEFT and
DeepSpeed tests train on them. Word-level: short 'ham'/'spam' messages and a classifier saved like a Hub model
(word-level tokenizer + small BERT).
"""

import csv
import random
from pathlib import Path

import torch
from datasets import Dataset
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import BertConfig, BertForSequenceClassification, PreTrainedTokenizerFast

WORDS = {0: ["meeting", "lunch", "tomorrow", "call", "home"], 1: ["prize", "win", "free", "claim", "cash"]}
FILLER = ["the", "a", "you", "now", "please", "today", "my", "our"]


def marker_token_data(n=240, length=12, vocab=60, seed=0) -> Dataset:
    """Class c sentences contain marker token 10 + c somewhere; everything else is noise."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(20, vocab, (n, length), generator=g)
    labels = torch.arange(n) % 3
    ids[torch.arange(n), torch.randint(1, length, (n,), generator=g)] = 10 + labels
    ids[:, 0] = 1
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": torch.ones_like(ids).tolist(),
                              "labels": labels.tolist()}).with_format("torch")


def tiny_bert_config() -> BertConfig:
    """The 2-layer, 3-class BERT that learns ``marker_token_data`` (no dropout: runs repeat exactly)."""
    return BertConfig(vocab_size=60, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=16, num_labels=3,
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def fit_token_classifier(model, data, epochs=40):
    """AdamW on ``marker_token_data`` in batches of 32; returns the model in eval mode."""
    batch = data[:]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=torch.Generator().manual_seed(0)).split(32):
            loss = model(input_ids=batch["input_ids"][idx], attention_mask=batch["attention_mask"][idx],
                         labels=batch["labels"][idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


def write_messages(path: Path, n: int = 160, seed: int = 0) -> Path:
    """A csv of short 'ham' (0) and 'spam' (1) messages: each has two words of its class among filler."""
    rng = random.Random(seed)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        for i in range(n):
            label = i % 2
            words = rng.sample(FILLER, 4) + rng.sample(WORDS[label], 2)
            rng.shuffle(words)
            writer.writerow([" ".join(words), label])
    return path


def save_text_model(folder: Path, messages: Path, epochs: int = 15) -> Path:
    """Tokenizer and a 2-layer BERT trained on ``messages``, saved to ``folder``."""
    vocab = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}
    for word in sorted({w for ws in WORDS.values() for w in ws} | set(FILLER)):
        vocab[word] = len(vocab)
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=32, num_labels=2,
                        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BertForSequenceClassification(config)
    rows = list(csv.DictReader(open(messages)))
    batch = tokenizer([r["text"] for r in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([int(r["label"]) for r in rows])
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).split(32):
            loss = model(input_ids=batch["input_ids"][idx], attention_mask=batch["attention_mask"][idx],
                         labels=labels[idx]).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
