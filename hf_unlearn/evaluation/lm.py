"""What a causal language model still knows of some texts: perplexity, verbatim recall, membership signals.

The measures LLM unlearning is judged by, as plain functions over a model and tokenised
texts (``input_ids``, optional ``attention_mask``; padding never counts):

* ``perplexity``: exp of the mean next-token loss over every real token of a set.
* ``sequence_scores``: per text, the mean token loss, the zlib ratio (loss over the zlib-compressed length
  of the text, Carlini et al. 2021: a text that is merely easy compresses well too) and min-k % (the mean
  negative log-probability of the k % least likely tokens, Shi et al. 2024). Lower means "looks trained on".
* ``membership_auc``: ROC AUC of one of those scores, texts vs held-out texts (0.5: indistinguishable).
* ``verbatim_memorization``: greedy continuation of each text's first tokens, compared with its true
  continuation: exact-match rate, token accuracy and ROUGE-L (longest common subsequence F1 on tokens).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .metrics import loss_threshold_auc

SCORES = ("loss", "zlib", "min_k")


def _batches(rows: Sequence[dict], batch_size: int, pad_id: int):
    """Right-padded ``input_ids`` / ``attention_mask`` batches of token lists (no labels needed)."""
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        width = max(len(r["input_ids"]) for r in chunk)
        ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
        mask = torch.zeros(len(chunk), width, dtype=torch.long)
        for i, row in enumerate(chunk):
            tokens = torch.as_tensor(row["input_ids"], dtype=torch.long)
            real = torch.as_tensor(row.get("attention_mask", [1] * len(tokens)), dtype=torch.long)
            ids[i, : len(tokens)], mask[i, : len(tokens)] = tokens, real
        yield ids, mask


def _rows(texts) -> list[dict]:
    if hasattr(texts, "with_format"):
        columns = [c for c in ("input_ids", "attention_mask") if c in texts.column_names]
        texts = texts.select_columns(columns).with_format(None)
    rows = [dict(r) for r in texts]
    if not rows:
        raise ValueError("There are no texts to measure.")
    if any(len(r["input_ids"]) < 2 for r in rows):
        raise ValueError("Every text needs at least two tokens (one to predict from, one to predict).")
    return rows


@torch.no_grad()
def token_log_probs(model: nn.Module, texts, *, batch_size: int = 8, pad_id: int = 0) -> list[torch.Tensor]:
    """Per text, the log-probability of each real token given the ones before it (length − 1 values)."""
    rows = _rows(texts)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out = []
    try:
        for ids, mask in _batches(rows, batch_size, pad_id):
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            log_probs = F.log_softmax(logits[:, :-1], dim=-1).gather(2, ids[:, 1:, None].to(device)).squeeze(2)
            real = mask[:, 1:].bool() & mask[:, :-1].bool()
            out += [lp[r.to(device)].cpu() for lp, r in zip(log_probs, real, strict=True)]
    finally:
        model.train(was_training)
    return out


def perplexity(model: nn.Module, texts, *, batch_size: int = 8, pad_id: int = 0) -> float:
    """exp(mean next-token loss) over every real token of ``texts`` (not a mean of per-text perplexities)."""
    values = torch.cat(token_log_probs(model, texts, batch_size=batch_size, pad_id=pad_id))
    return math.exp(-float(values.double().mean()))


def sequence_scores(model: nn.Module, texts, raw_texts: Sequence[str] | None = None, *, k: float = 0.2,
                    batch_size: int = 8, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Per-text ``loss``, ``zlib`` (needs ``raw_texts``) and ``min_k`` scores; lower looks more like training data."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must lie in (0, 1], got {k}")
    per_text = token_log_probs(model, texts, batch_size=batch_size, pad_id=pad_id)
    loss = np.array([-float(lp.double().mean()) for lp in per_text])
    min_k = np.array([-float(lp.double().sort().values[: max(1, int(len(lp) * k))].mean()) for lp in per_text])
    scores = {"loss": loss, "min_k": min_k}
    if raw_texts is not None:
        if len(raw_texts) != len(per_text):
            raise ValueError(f"{len(raw_texts)} raw texts for {len(per_text)} tokenised ones.")
        scores["zlib"] = loss / np.array([len(zlib.compress(t.encode("utf-8"))) for t in raw_texts])
    return scores


def membership_auc(member: dict[str, np.ndarray], held_out: dict[str, np.ndarray], score: str = "loss") -> float:
    """AUC of telling ``member`` texts from ``held_out`` ones by ``score`` (lower = member); 0.5 is chance."""
    if score not in SCORES:
        raise ValueError(f"score must be one of {SCORES}, got {score!r}")
    if score not in member or score not in held_out:
        raise ValueError(f"Score {score!r} was not computed (the zlib score needs raw_texts).")
    return loss_threshold_auc(member[score], held_out[score])


def longest_common_subsequence(reference: Sequence, candidate: Sequence) -> int:
    """Length of the longest common subsequence of two sequences (tokens or words), what ROUGE-L counts."""
    previous = [0] * (len(candidate) + 1)
    for token in reference:
        current = [0]
        for j, other in enumerate(candidate):
            current.append(previous[j] + 1 if token == other else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def rouge_l(reference: Sequence[int], candidate: Sequence[int]) -> float:
    """ROUGE-L F1 of two token sequences: from their longest common subsequence."""
    if not reference or not candidate:
        return 0.0
    common = longest_common_subsequence(reference, candidate)
    if common == 0:
        return 0.0
    precision, recall = common / len(candidate), common / len(reference)
    return 2 * precision * recall / (precision + recall)


@torch.no_grad()
def verbatim_memorization(model: nn.Module, texts, *, prefix_tokens: int = 16,
                          continuation_tokens: int = 16) -> dict[str, float]:
    """Greedy continuation of each text's first ``prefix_tokens`` against its next ``continuation_tokens``.

    Texts shorter than prefix + continuation are left out (the count is returned). Greedy decoding is
    done token by token here, so any causal LM that returns ``logits`` works, with or without ``generate``.
    """
    rows = [r for r in _rows(texts) if len(r["input_ids"]) >= prefix_tokens + continuation_tokens]
    if not rows:
        raise ValueError(f"No text has {prefix_tokens} + {continuation_tokens} tokens to test recall on.")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    exact, accuracy, rouge = [], [], []
    try:
        for row in rows:
            tokens = torch.as_tensor(row["input_ids"][: prefix_tokens + continuation_tokens], device=device)
            generated = tokens[None, :prefix_tokens]
            for _ in range(continuation_tokens):
                next_token = model(input_ids=generated).logits[:, -1].argmax(-1, keepdim=True)
                generated = torch.cat([generated, next_token], dim=1)
            guess, truth = generated[0, prefix_tokens:].tolist(), tokens[prefix_tokens:].tolist()
            exact.append(float(guess == truth))
            accuracy.append(float(np.mean([a == b for a, b in zip(guess, truth, strict=True)])))
            rouge.append(rouge_l(truth, guess))
    finally:
        model.train(was_training)
    return {"exact_match": 100 * float(np.mean(exact)), "token_accuracy": 100 * float(np.mean(accuracy)),
            "rouge_l": float(np.mean(rouge)), "texts": len(rows)}
