"""The field's measures of LLM unlearning on question/answer data, from their definitions.

TOFU (Maini et al. 2024) and MUSE (Shi et al. 2024), as OpenUnlearning computes them:

* ``answer_probability``: P(a | q)^(1/|a|) = exp(mean log-probability of the answer's tokens given the
  question), the length-normalised probability; with wrong options, normalised against them:
  P(a)^(1/|a|) / (P(a)^(1/|a|) + Σ P(â)^(1/|â|)) (TOFU's real-world questions).
* ``truth_ratios``: per question, R = (Π_j P(â_j | q)^(1/|â_j|))^(1/m) / P(ã | q)^(1/|ã|), the geometric
  mean of the m perturbed answers' normalised probabilities over the paraphrased (true) answer's. R near 1:
  the model cannot tell the true answer from wrong ones written the same way; R near 0: it knows the answer.
  ``truth_ratio_statistic`` summarises them: on forgotten facts mean(min(R, 1/R)) (1 is best), elsewhere
  mean(max(0, 1 − R)) (the higher, the more the model prefers true answers).
* ``forget_quality``: the p-value of a two-sample Kolmogorov-Smirnov test between the truth ratios an
  unlearned model and a model trained without the forget set give the forget set. High (TOFU reads > 0.05)
  means the two cannot be told apart.
* ``rouge_l_recall``: the longest common word subsequence of a generated answer and the gold one, over the
  gold answer's length.
* ``model_utility``: the harmonic mean of the utility numbers (a single collapsed one pulls it to 0).
* ``min_k_plus_plus_scores`` (Zhang et al. 2024) and ``privleak`` (MUSE): see their docstrings.

Prompts are the question's tokens (special tokens included) followed by the answer's and an end-of-sequence
token, exactly as ``data.causal_lm.tokenize_example`` tokenises training examples: a model is scored on the
tokens it was fine-tuned and unlearned on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.causal_lm import IGNORE_INDEX, tokenize_example
from ..utils.modes import eval_mode
from .lm import longest_common_subsequence
from .metrics import loss_threshold_auc


def pad_id_of(tokenizer) -> int:
    """The tokenizer's pad id, else its end-of-sequence id, else 0 (padding is masked either way)."""
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, name, None)
        if value is not None:
            return int(value)
    return 0


def _encode(tokenizer, questions: Sequence[str], answers: Sequence[str]) -> list[tuple[list[int], int]]:
    """(token ids, index of the first answer token) per pair, tokenised as for training."""
    if len(questions) != len(answers):
        raise ValueError(f"{len(questions)} questions for {len(answers)} answers.")
    rows = []
    for question, answer in zip(questions, answers, strict=True):
        example = tokenize_example(tokenizer, answer, question)
        start = next(i for i, label in enumerate(example["labels"]) if label != IGNORE_INDEX)
        if start == 0:
            raise ValueError(f"The question {question!r} has no token to condition the answer on.")
        rows.append((example["input_ids"], start))
    return rows


@torch.no_grad()
def answer_token_stats(model: nn.Module, tokenizer, questions: Sequence[str], answers: Sequence[str], *,
                       batch_size: int = 16, moments: bool = True) -> list[dict[str, torch.Tensor]]:
    """Per (question, answer), over the answer's tokens (end-of-sequence included): ``log_prob``, each token's
    log-probability given the question and the tokens before it, and (with ``moments``) ``mu`` / ``sigma``,
    the mean and standard deviation of log p(z) for z drawn from the model's own next-token distribution at
    that position (what Min-K%++ normalises by)."""
    encoded = _encode(tokenizer, questions, answers)
    device, pad = next(model.parameters()).device, pad_id_of(tokenizer)
    out = []
    with eval_mode(model):
        for begin in range(0, len(encoded), batch_size):
            chunk = encoded[begin : begin + batch_size]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for i, (tokens, _) in enumerate(chunk):
                ids[i, : len(tokens)], mask[i, : len(tokens)] = torch.as_tensor(tokens), 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            log_p = F.log_softmax(logits[:, :-1], dim=-1).clamp_min(-1e4)  # finite where p underflows to 0
            found = {"log_prob": log_p.gather(2, ids[:, 1:, None].to(device)).squeeze(2)}
            if moments:
                p = log_p.exp()
                found["mu"] = (p * log_p).sum(-1)
                found["sigma"] = (p * (log_p - found["mu"][..., None]).square()).sum(-1).clamp_min(1e-12).sqrt()
            for i, (tokens, start) in enumerate(chunk):
                where = slice(start - 1, len(tokens) - 1)  # position t predicts token t + 1
                out.append({key: value[i, where].cpu() for key, value in found.items()})
    return out


def mean_log_probs(model: nn.Module, tokenizer, questions: Sequence[str], answers: Sequence[str], *,
                   batch_size: int = 16) -> np.ndarray:
    """Per pair, the mean log-probability of the answer's tokens given the question (minus the mean loss)."""
    stats = answer_token_stats(model, tokenizer, questions, answers, batch_size=batch_size, moments=False)
    return np.array([float(s["log_prob"].double().mean()) for s in stats])


def option_log_probs(model: nn.Module, tokenizer, rows, column: str, *, batch_size: int = 16) -> np.ndarray:
    """Mean answer log-probabilities of ``column``: shape (rows,) for a text column, (rows, m) for a list one
    (``perturbed_answers``); every row of a list column must hold the same number of options."""
    questions, values = list(rows["question"]), list(rows[column])
    if values and isinstance(values[0], str):
        return mean_log_probs(model, tokenizer, questions, values, batch_size=batch_size)
    counts = {len(v) for v in values}
    if len(counts) != 1:
        raise ValueError(f"Every row needs as many {column!r} as the others, got counts {sorted(counts)}.")
    m = counts.pop()
    flat = mean_log_probs(model, tokenizer, [q for q in questions for _ in range(m)],
                          [a for options in values for a in options], batch_size=batch_size)
    return flat.reshape(len(values), m)


def answer_probability(correct: np.ndarray, wrong: np.ndarray | None = None) -> np.ndarray:
    """Per question, exp(mean log-prob) of the answer; with ``wrong`` options' mean log-probs (rows, m), that
    normalised over the answer and its options, as TOFU scores questions a model may phrase differently."""
    correct_p = np.exp(np.asarray(correct, dtype=np.float64))
    if wrong is None:
        return correct_p
    return correct_p / (correct_p + np.exp(np.asarray(wrong, dtype=np.float64)).sum(axis=1))


def truth_ratios(correct: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """Per question, R = geometric mean over the perturbed answers of P(â|q)^(1/|â|), over P(ã|q)^(1/|ã|):
    exp(mean_j ℓ̄(â_j) − ℓ̄(ã)) with ℓ̄ the mean token log-probability."""
    correct, perturbed = np.asarray(correct, dtype=np.float64), np.asarray(perturbed, dtype=np.float64)
    if perturbed.ndim != 2 or len(perturbed) != len(correct):
        raise ValueError(f"perturbed must be (questions, options); got {perturbed.shape} for {len(correct)}.")
    return np.exp(perturbed.mean(axis=1) - correct)


def truth_ratio_statistic(ratios: Sequence[float], *, forget: bool) -> float:
    """TOFU's summary: mean(min(R, 1/R)) on a forget set (1: true and wrong answers equally likely), else
    mean(max(0, 1 − R)) (1: wrong answers far less likely than the true one)."""
    ratios = np.asarray(ratios, dtype=np.float64)
    if forget:
        return float(np.mean(np.minimum(ratios, 1.0 / np.maximum(ratios, 1e-300))))
    return float(np.mean(np.maximum(0.0, 1.0 - ratios)))


def forget_quality(ratios: Sequence[float], reference_ratios: Sequence[float]) -> float:
    """p-value of the two-sample KS test between a model's forget-set truth ratios and those of a model
    trained without the forget set (TOFU's forget quality; 1 for identical samples)."""
    from scipy.stats import ks_2samp

    if len(ratios) == 0 or len(reference_ratios) == 0:
        raise ValueError("Forget quality needs truth ratios from both models.")
    return float(ks_2samp(np.asarray(ratios, dtype=np.float64), np.asarray(reference_ratios, dtype=np.float64)).pvalue)


def words(text: str) -> list[str]:
    """Lowercased runs of letters and digits: the words ROUGE compares (punctuation dropped, no stemming)."""
    return re.findall(r"[a-z0-9]+", text.lower())


def rouge_l_recall(reference: str, generated: str) -> float:
    """Longest common word subsequence of ``generated`` and ``reference`` over the reference's word count."""
    ref = words(reference)
    if not ref:
        raise ValueError("The reference answer has no word.")
    return longest_common_subsequence(ref, words(generated)) / len(ref)


def harmonic_mean(values: Sequence[float]) -> float:
    """n / Σ 1/v; 0 as soon as one value is 0 (a collapsed ability is not averaged away)."""
    values = [float(v) for v in values]
    if not values or any(v < 0 or math.isnan(v) for v in values):
        raise ValueError(f"The harmonic mean needs non-negative numbers, got {values}")
    return 0.0 if min(values) == 0.0 else len(values) / sum(1.0 / v for v in values)


def model_utility(parts: Mapping[str, float]) -> float:
    """TOFU's model utility: the harmonic mean of the utility numbers (probability, ROUGE-L recall and truth
    ratio statistic on retained people and on world facts)."""
    return harmonic_mean(list(parts.values()))


def min_k_plus_plus_scores(stats: Sequence[Mapping[str, torch.Tensor]], k: float = 0.4) -> np.ndarray:
    """Min-K%++ (Zhang et al. 2024), negated so that lower means "looks trained on" (as losses do).

    Per token, z_t = (log p(x_t | x_<t) − μ_t) / σ_t with μ_t and σ_t the mean and standard deviation of
    log p(z | x_<t) for z drawn from the model's next-token distribution (``answer_token_stats``); a text's
    Min-K%++ is the mean of its lowest ⌊k·T⌋ (at least one) z_t, high for members. Returned: minus that.
    """
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must lie in (0, 1], got {k}")
    scores = []
    for s in stats:
        z = ((s["log_prob"].double() - s["mu"].double()) / s["sigma"].double()).sort().values
        scores.append(-float(z[: max(1, int(len(z) * k))].mean()))
    return np.array(scores)


def loss_scores(stats: Sequence[Mapping[str, torch.Tensor]]) -> np.ndarray:
    """Per text, the mean token loss of its answer (lower = looks trained on)."""
    return np.array([-float(s["log_prob"].double().mean()) for s in stats])


def membership_aucs(member_stats, holdout_stats, k: float = 0.4) -> dict[str, float]:
    """AUC of telling members from held-out texts by the ``loss`` and by ``min_k_plus_plus`` (1: members
    recognised perfectly, 0.5: indistinguishable, below 0.5: members look less trained on than unseen text)."""
    return {"loss": loss_threshold_auc(loss_scores(member_stats), loss_scores(holdout_stats)),
            "min_k_plus_plus": loss_threshold_auc(min_k_plus_plus_scores(member_stats, k),
                                                  min_k_plus_plus_scores(holdout_stats, k))}


def privleak(auc_unlearned: float, auc_retain: float) -> float:
    """MUSE's PrivLeak in percent, from membership AUCs of forget (members) vs holdout texts.

    MUSE's AUC counts the holdout texts as the positive class, 1 − the AUC given here, so PrivLeak =
    ((1 − AUC_unlearned) − (1 − AUC_retain)) / (1 − AUC_retain) · 100, the signs of MUSE's tables: 0 is the
    model trained without the forget set, negative means the forget set still looks trained on
    (under-unlearning; −100 when it is recognised perfectly against a reference at 0.5), positive that it
    looks less familiar than unseen text (over-unlearning). NaN when the reference recognises it perfectly.
    """
    base = 1.0 - auc_retain
    if base == 0.0:
        return float("nan")
    return ((1.0 - auc_unlearned) - base) / base * 100.0


@torch.no_grad()
def generate_answers(model: nn.Module, tokenizer, questions: Sequence[str], *, max_new_tokens: int = 32,
                     batch_size: int = 16) -> list[str]:
    """Greedy answers to ``questions``: each question tokenised as in training, left-padded, decoded without
    special tokens."""
    device, pad = next(model.parameters()).device, pad_id_of(tokenizer)
    answers = []
    with eval_mode(model):
        for begin in range(0, len(questions), batch_size):
            prompts = [list(tokenizer(q)["input_ids"]) for q in questions[begin : begin + batch_size]]
            width = max(map(len, prompts))
            ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=device)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                 do_sample=False, pad_token_id=pad)
            answers += [a.strip() for a in tokenizer.batch_decode(out[:, width:], skip_special_tokens=True)]
    return answers
