"""The per-example challenge score against values computed by hand."""

import math

import numpy as np
import pytest

from hf_unlearn.evaluation.challenge_score import (
    EPSILON_CAP,
    epsilon_points,
    example_epsilon,
    final_score,
    forget_score,
    logit_scaled_confidence,
)


def test_logit_scaled_confidence_is_log_odds_of_the_true_label_and_stable():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.log(p[[0, 1], [0, 2]]) - np.log(1 - p[[0, 1], [0, 2]])
    assert np.allclose(logit_scaled_confidence(logits, np.array([0, 2])), expected)
    # p_y = 1 - 1e-40 in float64 would give log(0); the stable form gives the true log-odds, 100 - 8 = 92
    assert logit_scaled_confidence(np.array([[100.0, 8.0]]), np.array([0]))[0] == pytest.approx(92.0)


def test_a_hand_computed_example():
    # unlearned 0,1,2,3 and retrained 2,3,4,5: the best rule ("retrained when >= 3") errs on one of four a side,
    # FPR = FNR = 1/4, so eps = log(3/4 - delta) - log(1/4) ~ log 3; with 4 models a side ceil(log 3) = 2 allows
    # buckets up to 2.0, and 1.10 falls in the third (1.0-1.5): 1/4 point
    eps = example_epsilon(np.array([0.0, 1, 2, 3]), np.array([2.0, 3, 4, 5]))
    assert eps == pytest.approx(math.log((0.75 - 1e-5) / 0.25))
    assert epsilon_points(eps, 4) == 0.25


def test_bucket_points_halve_and_stop_at_the_resolution_of_n_models():
    assert [epsilon_points(e, 16) for e in (0.0, 0.49, 0.5, 1.2, 2.9, 3.0, 40.0)] == [1, 1, 0.5, 0.25, 1 / 32, 0, 0]


def test_identical_distributions_score_high_shifted_ones_low_and_a_constant_one_zero():
    rng = np.random.default_rng(0)
    models, examples = 16, 40
    retrained = rng.normal(0.0, 1.0, (models, examples))
    same = forget_score(rng.normal(0.0, 1.0, (models, examples)), retrained)["forget_score"]
    shifted = forget_score(rng.normal(2.5, 1.0, (models, examples)), retrained)["forget_score"]
    separated = forget_score(rng.normal(20.0, 1.0, (models, examples)), retrained)
    # two samples of one distribution still differ by chance: with 16 models a side the score tops out near 0.2
    # (the ceiling of retrained-against-retrained models), and a 2.5-sigma shift falls far below it
    assert 0.12 < same < 0.3 and shifted < same / 3
    assert separated["forget_score"] == 0.0 and np.all(separated["epsilons"] == EPSILON_CAP)
    # "do nothing": every unlearned model is the original, one value per example, however near the retrained ones
    constant = np.tile(retrained.mean(axis=0), (models, 1))
    result = forget_score(constant, retrained)
    assert result["forget_score"] == 0.0 and np.all(result["epsilons"] == EPSILON_CAP)


def test_a_narrower_family_inside_the_other_is_caught_by_the_interval_rule():
    # unlearned confidences sit inside the retrained ones' range, with the same median: no single threshold
    # separates them, an interval around the unlearned ones does
    retrained = np.array([-4.0, -3, -2, -1, 1, 2, 3, 4])
    unlearned = np.array([-0.4, -0.3, -0.2, -0.1, 0.1, 0.2, 0.3, 0.4])
    assert example_epsilon(unlearned, retrained) == EPSILON_CAP  # [-0.4, 0.4] holds all of one, none of the other
    wider = np.array([-1.5, -0.3, -0.2, -0.1, 0.1, 0.2, 0.3, 1.5])
    assert 0 < example_epsilon(wider, retrained) < EPSILON_CAP


def test_bad_shapes_and_too_few_models_are_refused_and_the_final_score_scales():
    with pytest.raises(ValueError, match="one shape"):
        forget_score(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="at least 3 models"):
        forget_score(np.zeros((2, 3)), np.zeros((2, 3)))
    assert final_score(0.5, 95.0, 100.0, 80.0, 100.0) == pytest.approx(0.5 * 0.95 * 0.8)
