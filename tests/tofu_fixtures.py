"""Stand-ins whose numbers are known: a word tokenizer with a fixed list and a model whose next-token
distribution never changes, so every log-probability in a TOFU measure can be worked out by hand."""

from types import SimpleNamespace

import torch
from torch import nn


class WordTokenizer:
    """One id per whitespace-separated word of a fixed list; no special tokens but the end of sequence."""

    def __init__(self, words: list[str], eos: str):
        self.ids = {w: i for i, w in enumerate(words)}
        self.eos_token_id, self.pad_token_id = self.ids[eos], None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": [self.ids[w] for w in text.split()]}


class FixedNextToken(nn.Module):
    """Gives every position the same next-token distribution, whatever came before."""

    def __init__(self, probs: list[float]):
        super().__init__()
        self.log_probs = nn.Parameter(torch.tensor(probs).log())

    def forward(self, input_ids, attention_mask=None):
        return SimpleNamespace(logits=self.log_probs.expand(*input_ids.shape, -1))


# q x y z </s> with these probabilities at every position
TOKENIZER = WordTokenizer(["q", "x", "y", "z", "</s>"], eos="</s>")
PROBS = [0.1, 0.4, 0.2, 0.2, 0.1]
MODEL = FixedNextToken(PROBS)
