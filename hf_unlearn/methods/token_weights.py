"""Per-token weights for a causal LM's forget loss: push the tokens the kept texts would not teach.

A model fine-tuned without the forget texts still writes their template ("... was born in ...") and copies the
name the question gives it; what it lacks is the fact. A forget loss that pushes every answer token down alike
breaks the template and the names first, because they are most of an answer's tokens and among its most confident:
on invented people the default path answered a forgotten question "itas Quinkomora was born in Lodorh." where a
model fine-tuned without that person answers fluently and wrongly ("Mora Quinkalo was born in Garzoville.").

The classifier's neighbour weights (``neighbour_weights.py``), one level down: a target token weighs
``1 - a + FLOOR``, ``a`` the share of its ``k`` nearest kept answer tokens that are the same token. "Nearest" is
cosine similarity of the hidden state three quarters of the way through the model at the position that predicts
the token, read in the forward pass of the loss (detached), against kept answer tokens read under the original
before the first step. After "was", the kept answers say "born" too (weight near FLOOR); after "born in", each
kept person has another town (weight near 1). The classifier's middle layer is too early here: halfway through
SmolLM2-135M the state after a person's name does not yet tell "works" (a question about the job) from "plays" (the
instrument): 7 and 9 of 48 template tokens weighed more than 0.5 on two seeds; three quarters of the way through 0
and 2, while the forgotten facts weigh 0.92 and 0.84 (``benchmarks/token_weight_layers.py``).

A target token that belongs to a word of its own example's prompt weighs FLOOR: copying the name from the
question is not knowledge of the forget set. Words, not token ids: an answer that starts with the name tokenises
it without the leading space the question gave it ("M" "itas" against " Mit" "as"). With no tokenizer to read
words, a token counts as copied when its id is among the prompt's. The weights are normalised over the batch's
target tokens, so they divide the push among tokens and never shrink it.

The weights rest on a premise: a model that never saw the forget texts still says their template and copies their
names. A pretrained LM does; a small model that learned its training texts by heart may not (a two-layer GPT-2
trained from scratch on invented people predicts fewer than 90 % of the held-out people's copied name tokens,
``tests/test_token_weights.py``). The trainer reads this copy rate on the held-out check sample before the first
step and keeps uniform weights below ``MIN_COPY_RATE``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from ..data.causal_lm import IGNORE_INDEX
from .neighbour_weights import FLOOR, RetainNeighbours

TOKEN_BANK_SIZE = 8192  # kept answer tokens whose features are held (a seeded sample)
TOKEN_LAYER = 0.75  # which hidden state, as a fraction of the depth (0: the embeddings' output)
# the share of held-out answer tokens copied from their prompt the original must predict for the weights to apply
MIN_COPY_RATE = 0.9


@dataclass
class RetainTokenNeighbours(RetainNeighbours):
    """Kept answer tokens' hidden states (unit rows) and ids, and the tokenizer that reads ids as words."""

    tokenizer: object | None = None
    _copies: dict = field(default_factory=dict, repr=False)  # per (prompt, answer) ids: the flags (rows repeat)

    def copied(self, prompt: list[int], answer: list[int]) -> list[bool]:
        """Per answer token, whether the answer word it belongs to is a word of the prompt."""
        key = (tuple(prompt), tuple(answer))
        if key not in self._copies:
            self._copies[key] = _copied_words(self.tokenizer, prompt, answer)
        return self._copies[key]


def _word(text: str) -> str:
    """A word as the copy test compares it: lowercased, without surrounding punctuation or a final 's."""
    word = text.lower().strip(".,;:!?\"()[]{}")
    for suffix in ("'s", "\u2019s"):
        word = word.removesuffix(suffix)
    return word.strip("'\u2019")


def _copied_words(tokenizer, prompt: list[int], answer: list[int]) -> list[bool]:
    """Decode the answer one token further at a time to find the characters each token adds, and flag the tokens
    whose characters fall in a word of the prompt (tokenizer-agnostic: byte-level BPE marks a word's start with a
    space inside the token, a word-level tokenizer puts the space between tokens)."""
    prompt_words = {_word(w) for w in tokenizer.decode(prompt, skip_special_tokens=True).split()} - {""}
    if not prompt_words:  # a plain text without a prompt copies nothing
        return [False] * len(answer)
    text = tokenizer.decode(answer, skip_special_tokens=True)
    words = [(m.start(), m.end(), _word(m.group()) in prompt_words) for m in re.finditer(r"\S+", text)]
    flags, start = [], 0
    for count in range(1, len(answer) + 1):
        end = min(len(tokenizer.decode(answer[:count], skip_special_tokens=True)), len(text))
        flags.append(any(copied for left, right, copied in words if left < end and right > start))
        start = max(start, end)
    return flags


def answer_token_states(hidden_states: tuple, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden state ``TOKEN_LAYER`` of the way through at every position that predicts a target token, and
    that token, one row per target token in ``next_token_targets``' order (position t predicts token t + 1)."""
    if not hidden_states:
        raise TypeError("the model returns no hidden states")
    states = hidden_states[int(TOKEN_LAYER * (len(hidden_states) - 1))][:, :-1]
    targets = labels[:, 1:]
    keep = targets != IGNORE_INDEX
    return states[keep].float(), targets[keep]


def prompt_copies(input_ids: torch.Tensor, labels: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Per target token (``next_token_targets``' order), whether the same token id is among its example's prompt
    tokens (labelled -100 and attended to)."""
    prompt = labels == IGNORE_INDEX
    if attention_mask is not None:
        prompt &= attention_mask.bool()
    targets = labels[:, 1:]
    in_prompt = ((targets[:, :, None] == input_ids[:, None, :]) & prompt[:, None, :]).any(-1)
    return in_prompt[targets != IGNORE_INDEX]


def word_copies(bank: RetainTokenNeighbours, input_ids: torch.Tensor, labels: torch.Tensor,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
    """Per target token (``next_token_targets``' order), whether the answer word it belongs to is a word of its
    example's prompt (tokens labelled -100 and attended to)."""
    prompt = labels == IGNORE_INDEX
    if attention_mask is not None:
        prompt &= attention_mask.bool()
    flags: list[bool] = []
    for ids, row_prompt, row_labels in zip(input_ids.tolist(), prompt.tolist(), labels[:, 1:].tolist()):
        answer = [t for t in row_labels if t != IGNORE_INDEX]
        flags.extend(bank.copied([i for i, keep in zip(ids, row_prompt) if keep], answer))
    return torch.tensor(flags, dtype=torch.bool)


def copies(bank: RetainNeighbours, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
    """Per target token, whether it is copied from its prompt: by words with the bank's tokenizer, else by ids."""
    mask = inputs.get("attention_mask")
    if getattr(bank, "tokenizer", None) is not None:
        return word_copies(bank, inputs["input_ids"], labels, mask)
    return prompt_copies(inputs["input_ids"], labels, mask)


def token_weights(bank: RetainNeighbours, hidden_states: tuple, inputs: dict, labels: torch.Tensor) -> torch.Tensor:
    """Each target token's forget-loss weight from a forward pass's hidden states (detached: no gradient)."""
    with torch.no_grad():
        features, tokens = answer_token_states(hidden_states, labels)
        weights = 1.0 - bank.agreement(features, tokens) + FLOOR
        copied = copies(bank, inputs, labels)
        return torch.where(copied.to(weights.device), torch.full_like(weights, FLOOR), weights)
