"""A word-level tokenizer and a tiny GPT-2 that has memorised invented people (built in seconds, offline)."""

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from hf_unlearn.data.causal_lm import CausalLMCollator, tokenize_for_causal_lm
from hf_unlearn.data.fictitious_facts import fictitious_facts

NUM_PEOPLE = 24
TRAINED_PEOPLE = 20  # the last four are never shown: the held-out people
FORGET_PEOPLE = 2


def word_tokenizer(texts) -> PreTrainedTokenizerFast:
    """One token per word or punctuation mark of ``texts`` (GPT-2 has no pad token; this one has)."""
    split = pre_tokenizers.Whitespace()
    words = sorted({word for text in texts for word, _ in split.pre_tokenize_str(text)})
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "[UNK]", *words])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = split
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="[UNK]"
    )


def facts_and_tokenizer():
    facts = fictitious_facts(NUM_PEOPLE, seed=0)
    return facts, word_tokenizer(list(facts["question"]) + list(facts["answer"]))


def tiny_gpt2(vocab_size: int, seed: int = 0) -> GPT2LMHeadModel:
    torch.manual_seed(seed)
    config = GPT2Config(vocab_size=vocab_size, n_embd=64, n_layer=2, n_head=2, n_positions=64, bos_token_id=1,
                        eos_token_id=2, pad_token_id=0)
    return GPT2LMHeadModel(config)


def fit(model, dataset, tokenizer, epochs: int = 60, lr: float = 3e-3, batch_size: int = 16) -> GPT2LMHeadModel:
    """Memorise the answers of ``dataset`` (question/answer rows) with a plain AdamW loop."""
    rows = list(tokenize_for_causal_lm(dataset, tokenizer))
    collate = CausalLMCollator.for_tokenizer(tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(rows), generator=generator).tolist()
        for start in range(0, len(rows), batch_size):
            batch = collate([rows[i] for i in order[start : start + batch_size]])
            model(**batch).loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    model.eval()
    return model


def memorised_people() -> dict:
    """A tiny GPT-2 fitted to every question about the trained people; the forget, retain and held-out splits."""
    torch.set_num_threads(1)
    facts, tokenizer = facts_and_tokenizer()
    trained = facts.filter(lambda r: r["person"] < TRAINED_PEOPLE)
    return {"model": fit(tiny_gpt2(len(tokenizer)), trained, tokenizer), "tokenizer": tokenizer, "train": trained,
            "forget": trained.filter(lambda r: r["person"] < FORGET_PEOPLE),
            "retain": trained.filter(lambda r: r["person"] >= FORGET_PEOPLE),
            "held_out": facts.filter(lambda r: r["person"] >= TRAINED_PEOPLE)}
