"""TOFU's and MUSE's measures against values worked out by hand, on models whose next-token distribution is
fixed (so every log-probability is a known number), and on a tiny Llama for what padding could break."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import ks_2samp
from tofu_fixtures import MODEL, TOKENIZER, FixedNextToken, WordTokenizer
from transformers import LlamaConfig, LlamaForCausalLM

from hf_unlearn.data.causal_lm import tokenize_example
from hf_unlearn.evaluation.lm import token_log_probs
from hf_unlearn.evaluation.tofu_metrics import (
    answer_probability,
    answer_token_stats,
    forget_quality,
    generate_answers,
    harmonic_mean,
    mean_log_probs,
    min_k_plus_plus_scores,
    model_utility,
    option_log_probs,
    privleak,
    rouge_l_recall,
    truth_ratio_statistic,
    truth_ratios,
)


def test_answer_log_probs_are_the_answer_tokens_and_the_end_of_sequence_given_the_question():
    stats = answer_token_stats(MODEL, TOKENIZER, ["q q", "q"], ["x y", "z"], batch_size=2)
    expected = [[math.log(0.4), math.log(0.2), math.log(0.1)], [math.log(0.2), math.log(0.1)]]
    for s, want in zip(stats, expected, strict=True):
        assert s["log_prob"].tolist() == pytest.approx(want, abs=1e-6)
    assert mean_log_probs(MODEL, TOKENIZER, ["q"], ["x"])[0] == pytest.approx((math.log(0.4) + math.log(0.1)) / 2)
    assert set(answer_token_stats(MODEL, TOKENIZER, ["q"], ["x"], moments=False)[0]) == {"log_prob"}


def test_answer_probability_is_the_length_normalised_probability_and_can_be_normalised_over_options():
    correct = mean_log_probs(MODEL, TOKENIZER, ["q"], ["x"])  # P = 0.4 · 0.1 over two tokens
    wrong = option_log_probs(MODEL, TOKENIZER, {"question": ["q"], "perturbed_answers": [["y", "z z z"]]},
                             "perturbed_answers")
    assert wrong.shape == (1, 2)
    assert answer_probability(correct)[0] == pytest.approx(0.2)
    options = 0.2 + (0.2 * 0.1) ** (1 / 2) + (0.2**3 * 0.1) ** (1 / 4)
    assert answer_probability(correct, wrong)[0] == pytest.approx(0.2 / options)


def test_truth_ratio_is_the_geometric_mean_of_perturbed_over_the_paraphrase_normalised_probability():
    rows = {"question": ["q", "q"], "paraphrased_answer": ["x x", "y"], "perturbed_answers": [["y", "z z z"],
                                                                                              ["x", "x"]]}
    ratios = truth_ratios(option_log_probs(MODEL, TOKENIZER, rows, "paraphrased_answer"),
                          option_log_probs(MODEL, TOKENIZER, rows, "perturbed_answers"))
    perturbed = ((0.2 * 0.1) ** (1 / 2) * (0.2**3 * 0.1) ** (1 / 4)) ** (1 / 2)
    assert ratios[0] == pytest.approx(perturbed / (0.4**2 * 0.1) ** (1 / 3))
    assert ratios[1] == pytest.approx((0.4 * 0.1) ** (1 / 2) / (0.2 * 0.1) ** (1 / 2))  # = 2: prefers a wrong one


def test_the_truth_ratio_statistics_read_forget_and_retain_sets_differently():
    assert truth_ratio_statistic([0.5, 2.0, 1.0], forget=True) == pytest.approx((0.5 + 0.5 + 1.0) / 3)
    assert truth_ratio_statistic([0.25, 1.5], forget=False) == pytest.approx(0.75 / 2)


def test_options_with_ragged_counts_are_refused():
    rows = {"question": ["q", "q"], "perturbed_answers": [["y"], ["x", "z"]]}
    with pytest.raises(ValueError, match="as many"):
        option_log_probs(MODEL, TOKENIZER, rows, "perturbed_answers")


def test_forget_quality_is_scipys_ks_p_value_and_one_for_identical_samples():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0, 1, 30), rng.uniform(0.2, 1.2, 25)
    assert forget_quality(a, b) == ks_2samp(a, b).pvalue
    assert forget_quality(a, a) == 1.0
    assert forget_quality(np.linspace(0, 1, 20), np.linspace(10, 11, 20)) < 1e-6
    with pytest.raises(ValueError):
        forget_quality([], a)


@pytest.mark.parametrize("reference, generated, recall", [
    ("the cat sat on the mat", "the cat sat", 3 / 6),        # half of the reference's words, in order
    ("the cat sat", "The cat sat on the mat.", 1.0),         # all of them; extra words cost no recall
    ("the cat sat on the mat", "mat the on", 2 / 6),         # common subsequence "the on", not a bag of words
    ("Kalo Renmi plays the harp.", "", 0.0),
])
def test_rouge_l_recall_is_the_longest_common_word_subsequence_over_the_reference(reference, generated, recall):
    assert rouge_l_recall(reference, generated) == pytest.approx(recall)


def test_harmonic_mean_and_model_utility():
    assert harmonic_mean([1.0, 0.5]) == pytest.approx(2 / 3)
    assert harmonic_mean([0.9, 0.0, 0.8]) == 0.0
    assert model_utility({"a": 0.5, "b": 0.5, "c": 0.5}) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        harmonic_mean([0.5, -0.1])


@pytest.mark.parametrize("unlearned, retain, expected", [
    (1.0, 0.5, -100.0),   # still recognised perfectly: MUSE's under-unlearning sign
    (0.5, 0.5, 0.0),      # exactly the retain model's leak
    (0.0, 0.5, 100.0),    # looks less familiar than unseen text: over-unlearning
    (0.75, 0.6, (0.25 - 0.4) / 0.4 * 100),
])
def test_privleak_has_muses_sign_and_scale(unlearned, retain, expected):
    assert privleak(unlearned, retain) == pytest.approx(expected)


def test_privleak_is_undefined_when_the_reference_recognises_every_member():
    assert math.isnan(privleak(0.9, 1.0))


def test_min_k_plus_plus_normalises_each_token_by_the_models_own_distribution():
    tokenizer, probs = WordTokenizer(["a", "b", "c"], eos="c"), [0.5, 0.3, 0.2]
    stats = answer_token_stats(FixedNextToken(probs), tokenizer, ["a"], ["a b"])[0]  # answer tokens a, b, c
    mu = sum(p * math.log(p) for p in probs)
    sigma = math.sqrt(sum(p * math.log(p) ** 2 for p in probs) - mu**2)
    z = [(math.log(p) - mu) / sigma for p in probs]
    assert stats["mu"].tolist() == pytest.approx([mu] * 3, abs=1e-6)
    assert stats["sigma"].tolist() == pytest.approx([sigma] * 3, abs=1e-6)
    assert min_k_plus_plus_scores([stats], k=0.4)[0] == pytest.approx(-z[2], abs=1e-5)  # ⌊0.4·3⌋ = 1: the lowest
    assert min_k_plus_plus_scores([stats], k=0.7)[0] == pytest.approx(-(z[1] + z[2]) / 2, abs=1e-5)
    assert min_k_plus_plus_scores([stats], k=1.0)[0] == pytest.approx(-sum(z) / 3, abs=1e-5)
    with pytest.raises(ValueError):
        min_k_plus_plus_scores([stats], k=0.0)


# ------------------------------------------------------------------------------------------- a real model
def _tiny_llama(vocab_size: int) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config).eval()


@pytest.fixture(scope="module")
def llama_and_tokenizer():
    from lm_fixtures import word_tokenizer

    texts = ["Where was Kalo Renmi born ?", "Kalo Renmi was born in Sadorville .", "Which instrument does Kalo play ?",
             "Kalo plays the harp .", "What is the capital of France ?", "The capital of France is Paris ."]
    tokenizer = word_tokenizer(texts)
    return _tiny_llama(len(tokenizer)), tokenizer, texts


def test_answer_stats_on_a_llama_match_the_whole_texts_log_probs_and_ignore_padding(llama_and_tokenizer):
    model, tokenizer, texts = llama_and_tokenizer
    questions, answers = texts[0::2], texts[1::2]
    batched = answer_token_stats(model, tokenizer, questions, answers, batch_size=3)
    for question, answer, stats in zip(questions, answers, batched, strict=True):
        example = tokenize_example(tokenizer, answer, question)
        whole = token_log_probs(model, [example])[0]
        answer_length = sum(label != -100 for label in example["labels"])
        assert torch.allclose(stats["log_prob"], whole[-answer_length:], atol=1e-5)
        alone = answer_token_stats(model, tokenizer, [question], [answer], batch_size=1)[0]
        for key in ("log_prob", "mu", "sigma"):
            assert torch.allclose(stats[key], alone[key], atol=1e-5)


def test_greedy_answers_do_not_depend_on_left_padding(llama_and_tokenizer):
    model, tokenizer, texts = llama_and_tokenizer
    questions = [texts[0], texts[2], "Where was Kalo born ?"]  # three prompt lengths, padded together
    together = generate_answers(model, tokenizer, questions, max_new_tokens=6, batch_size=3)
    one_by_one = [generate_answers(model, tokenizer, [q], max_new_tokens=6)[0] for q in questions]
    assert together == one_by_one and all(together)
