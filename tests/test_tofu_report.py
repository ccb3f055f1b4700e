"""Fluency of generated answers, and the whole TOFU-shaped report on a tiny GPT-2 that memorised its people."""

import math

import pytest
import torch
from lm_fixtures import fit, tiny_gpt2, word_tokenizer
from tofu_fixtures import MODEL, TOKENIZER

from hf_unlearn.data.tofu_shaped import load_tofu_shaped_dataset, tofu_splits
from hf_unlearn.evaluation.fluency import fluency, is_word, judge_perplexity, non_word_rate, repeat_rate
from hf_unlearn.evaluation.tofu_metrics import forget_quality, harmonic_mean, privleak, truth_ratio_statistic
from hf_unlearn.evaluation.tofu_report import tofu_report

GIBBERISH = "Odalysiac. theAtrium. manship.AGRE."
FLUENT = "Kalo Renmi was born in Sadorville."


def test_token_soup_is_not_words_and_an_answer_about_an_invented_person_is():
    assert non_word_rate([GIBBERISH]) == 1.0
    assert non_word_rate([FLUENT]) == 0.0
    assert non_word_rate([FLUENT, GIBBERISH]) == pytest.approx(3 / 9)
    assert non_word_rate(["I don't know, sorry.", "Paris is the capital of France.", "It was 1984."]) == 0.0
    assert non_word_rate(["Kalo's dog is called Renmi."]) == 0.0


@pytest.mark.parametrize("chunk, word", [("theAtrium", False), ("manship.AGRE", False), ("Odalysiac", False),
                                         ("kalo", False), ("Kalo", True), ("THE", True), ("well-known", True),
                                         ("42", True), ("ca7t", False)])
def test_the_word_rule_chunk_by_chunk(chunk, word):
    from hf_unlearn.data.tofu_shaped import known_words

    assert is_word(chunk, known_words()) is word


def test_a_given_vocabulary_replaces_the_default():
    assert non_word_rate(["zyx wvu"], vocabulary={"zyx", "wvu"}) == 0.0
    assert non_word_rate(["was born"], vocabulary={"was"}) == 0.5


def test_repeat_rate_counts_words_that_close_an_immediate_repetition():
    assert repeat_rate(["the the the"]) == pytest.approx(2 / 3)
    assert repeat_rate(["a b a b"]) == pytest.approx(1 / 4)
    assert repeat_rate(["born in Sadorville born in Sadorville"]) == pytest.approx(1 / 6)
    assert repeat_rate([FLUENT]) == 0.0 and repeat_rate([""]) == 0.0


def test_judge_perplexity_and_the_fluency_dict():
    # The judge gives "x" (then </s>) 0.4 · 0.1 and "y" 0.2 · 0.1: mean token losses over two tokens each.
    losses = [-(math.log(0.4) + math.log(0.1)) / 2, -(math.log(0.2) + math.log(0.1)) / 2]
    assert judge_perplexity(MODEL, TOKENIZER, ["q", "q"], ["x", "y"]) == pytest.approx(math.exp(sum(losses) / 2))
    result = fluency(["x", "y"], vocabulary={"x"}, judge=MODEL, tokenizer=TOKENIZER, questions=["q", "q"])
    assert result == pytest.approx({"non_word_rate": 0.5, "repeat_rate": 0.0, "empty_rate": 0.0,
                                    "judge_perplexity": math.exp(sum(losses) / 2)})
    assert fluency(["", "..."])["empty_rate"] == 1.0
    with pytest.raises(ValueError, match="tokenizer"):
        fluency(["x"], judge=MODEL)


# ---------------------------------------------------------------------------------------------- the report
@pytest.fixture(scope="module")
def memorised():
    """10 invented people (1 forgotten, 1 held out), a tiny GPT-2 fitted on all 10 and one fitted on the 9
    others: the original and the retain model of a TOFU evaluation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: more threads only add overhead on a busy machine
    data = load_tofu_shaped_dataset(num_people=10, holdout_people=1, seed=0, num_perturbed=3)
    texts = [t for split in data.values() for r in split
             for t in (r["question"], r["answer"], r["paraphrased_answer"], *r["perturbed_answers"])]
    tokenizer = word_tokenizer(texts)
    original = fit(tiny_gpt2(len(tokenizer)), data["full"], tokenizer, epochs=40)
    retain = fit(tiny_gpt2(len(tokenizer)), data["retain99"], tokenizer, epochs=40)
    yield original, retain, tokenizer, tofu_splits(data, 1)
    torch.set_num_threads(threads)


def test_the_report_reads_memorisation_and_its_numbers_are_their_definitions(memorised):
    original, retain, tokenizer, splits = memorised
    torch.manual_seed(0)
    reference = tofu_report(retain, tokenizer, splits)
    report = tofu_report(original, tokenizer, splits, reference_truth_ratios=reference["forget_truth_ratios"],
                         reference_auc={"loss": 0.5, "min_k_plus_plus": 0.5}, judge=retain)
    # the original memorised the forgotten person; the retain model never saw them
    assert report["forget_rouge_l_recall"] == 1.0 > reference["forget_rouge_l_recall"]
    assert report["forget_probability"] > 0.5 > reference["forget_probability"]
    assert report["forget_probability"] > report["holdout_probability"]
    assert report["mia_auc"]["loss"] > 0.9 and report["mia_auc"]["loss"] > reference["mia_auc"]["loss"]
    # the summary numbers are their definitions applied to the reported values
    six = [report[f"{s}_{w}"] for s in ("retain", "world_facts") for w in ("probability", "rouge_l_recall",
                                                                            "truth_ratio")]
    assert report["model_utility"] == pytest.approx(harmonic_mean(six))
    assert report["forget_truth_ratio"] == pytest.approx(truth_ratio_statistic(report["forget_truth_ratios"],
                                                                               forget=True))
    assert len(report["forget_truth_ratios"]) == len(splits["forget"])
    assert report["forget_quality"] == pytest.approx(forget_quality(report["forget_truth_ratios"],
                                                                    reference["forget_truth_ratios"]))
    assert report["privleak"] == pytest.approx({s: privleak(a, 0.5) for s, a in report["mia_auc"].items()})
    assert set(report["fluency"]) == {"forget", "holdout"}
    forget_questions = list(splits["forget"]["question"])  # the judge read the generated answers, not the gold ones
    judged = judge_perplexity(retain, tokenizer, forget_questions, report["answers"]["forget"])
    assert report["fluency"]["forget"]["judge_perplexity"] == pytest.approx(judged)
    assert len(report["answers"]["forget"]) == len(splits["forget"])


def test_the_report_names_missing_sets(memorised):
    original, _, tokenizer, splits = memorised
    with pytest.raises(ValueError, match="world_facts"):
        tofu_report(original, tokenizer, {k: v for k, v in splits.items() if k != "world_facts"})
