"""Is a generated answer still language? Measures that tell a forgotten fact from a broken model.

An unlearned model should answer a question about a forgotten person the way it answers one about a person
it never saw: wrongly or vaguely, but in words. Gradient ascent taken too far answers "Odalysiac. theAtrium.
manship.AGRE." instead, which scores well on every forgetting metric. Four numbers catch it, each compared
between answers to forgotten and to held-out questions, with the retain model's (trained without the forget
set) values as the bar:

* ``non_word_rate``: the share of generated words that are not words. A whitespace-separated chunk, stripped
  of surrounding punctuation and of a final 's, is a word when it is letters (apostrophes and hyphens only
  inside, between letters) or a number, written lowercase, Capitalised or in capitals, and its lowercase form
  is in the vocabulary (by default ``data.tofu_shaped.known_words()``: a shipped English list and every word
  of the data's templates) or it is an invented name of the data (``is_invented_name``: built from the
  generator's syllables). "manship.AGRE." (punctuation inside), "theAtrium." (mixed case) and "Odalysiac."
  (unknown) are not words; "Kalo Renmi was born in Sadorville." is all words.
* ``repeat_rate``: the share of words that close an immediate repetition of the 1 to 3 words before them
  ("the the the": 2 of 3; "a b a b": 1 of 4), a degenerate loop a small vocabulary check misses.
* ``empty_rate``: the share of answers with no word at all (only punctuation, or nothing before the end).
* ``judge_perplexity``: exp of the mean, over answers, of the mean token loss a judge model (the original or
  the retain model) gives the generated answer after the question. Gibberish is improbable to any model
  that still speaks the language.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence

from torch import nn

from ..data.tofu_shaped import is_invented_name, known_words
from .tofu_metrics import mean_log_probs, words

_EDGE = ".,;:!?\"'()[]{}“”‘’«»…*"
_WORD = re.compile(r"[A-Za-z]+(?:['’-][A-Za-z]+)*|\d+(?:[.,]\d+)*")


def word_chunks(text: str) -> list[str]:
    """The whitespace-separated chunks of ``text`` that are not only punctuation, stripped of surrounding
    punctuation and of a final possessive 's."""
    chunks = []
    for chunk in text.split():
        chunk = chunk.strip(_EDGE)
        if chunk[-2:].lower() in {"'s", "’s"}:
            chunk = chunk[:-2]
        if chunk:
            chunks.append(chunk)
    return chunks


def is_word(chunk: str, vocabulary: Collection[str]) -> bool:
    """Whether one chunk (see ``word_chunks``) reads as a word under the rule of ``non_word_rate``."""
    if _WORD.fullmatch(chunk) is None:
        return False
    if chunk[0].isdigit():
        return True
    if not (chunk.islower() or chunk.isupper() or (chunk[0].isupper() and chunk[1:].islower())):
        return False
    if is_invented_name(chunk):
        return True
    lower = chunk.lower().replace("’", "'")
    return lower in vocabulary or all(part in vocabulary for part in lower.split("-"))


def non_word_rate(texts: Sequence[str], vocabulary: Collection[str] | None = None) -> float:
    """The share of all chunks of ``texts`` that are not words (0 when there is no chunk at all)."""
    vocabulary = known_words() if vocabulary is None else vocabulary
    chunks = [chunk for text in texts for chunk in word_chunks(text)]
    return sum(not is_word(c, vocabulary) for c in chunks) / len(chunks) if chunks else 0.0


def repeated_words(tokens: Sequence[str], max_n: int = 3) -> int:
    """How many of ``tokens`` close an immediate repetition of the ``n`` ≤ ``max_n`` tokens before them."""
    count = 0
    for i in range(1, len(tokens)):
        count += any(i + 1 >= 2 * n and tokens[i - n + 1 : i + 1] == tokens[i - 2 * n + 1 : i - n + 1]
                     for n in range(1, max_n + 1))
    return count


def repeat_rate(texts: Sequence[str], max_n: int = 3) -> float:
    """The share of all words of ``texts`` that close an immediate repetition (``repeated_words``)."""
    per_text = [words(text) for text in texts]
    total = sum(map(len, per_text))
    return sum(repeated_words(w, max_n) for w in per_text) / total if total else 0.0


def judge_perplexity(judge: nn.Module, tokenizer, questions: Sequence[str], answers: Sequence[str], *,
                     batch_size: int = 16) -> float:
    """exp(mean over answers of the judge's mean token loss on the answer given the question)."""
    return math.exp(-float(mean_log_probs(judge, tokenizer, list(questions), list(answers),
                                          batch_size=batch_size).mean()))


def fluency(answers: Sequence[str], *, vocabulary: Collection[str] | None = None, judge: nn.Module | None = None,
            tokenizer=None, questions: Sequence[str] | None = None, batch_size: int = 16) -> dict[str, float]:
    """``non_word_rate``, ``repeat_rate`` and ``empty_rate`` (answers without a word) of generated answers,
    and ``judge_perplexity`` when a judge model, its tokenizer and the questions are given.

    Read them side by side for forgotten and held-out questions: a model that forgot answers the first like
    the second; the retain model's values on both are the spread to expect.
    """
    result = {"non_word_rate": non_word_rate(answers, vocabulary), "repeat_rate": repeat_rate(answers),
              "empty_rate": sum(not words(a) for a in answers) / len(answers) if answers else 0.0}
    if judge is not None:
        if tokenizer is None or questions is None:
            raise ValueError("The judge's perplexity needs the tokenizer and the questions too.")
        result["judge_perplexity"] = judge_perplexity(judge, tokenizer, questions, answers, batch_size=batch_size)
    return result
