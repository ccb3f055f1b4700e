"""The per-example likelihood-ratio attack on synthetic confidences, and a case checked by hand."""

import math

import numpy as np
import pytest

from hf_unlearn.evaluation.ulira import auc, likelihood_ratio_scores, ulira


def test_auc_counts_pairs_and_ties_half():
    assert auc(np.array([3.0, 4.0]), np.array([1.0, 2.0])) == 1.0
    assert auc(np.array([1.0, 2.0]), np.array([3.0, 4.0])) == 0.0
    # pairs (pos, neg): (1,0) win, (1,1) tie, (1,2) loss, (3,0) (3,1) (3,2) wins: 4.5 of 6
    assert auc(np.array([1.0, 3.0]), np.array([0.0, 1.0, 2.0])) == pytest.approx(4.5 / 6)


def test_identical_families_are_indistinguishable():
    rng = np.random.default_rng(0)
    mean = rng.normal(0, 3, 200)  # examples differ a lot from each other, the families do not
    unlearned = mean + rng.normal(0, 1, (16, 200))
    retrained = mean + rng.normal(0, 1, (16, 200))
    result = ulira(unlearned, retrained)
    assert abs(result["auc"] - 0.5) < 0.05 and abs(result["accuracy"] - 0.5) < 0.05
    assert abs(result["example_auc"].mean() - 0.5) < 0.05


def test_shifted_families_are_recognised_and_the_whole_set_more_so():
    rng = np.random.default_rng(1)
    mean = rng.normal(0, 3, 200)
    retrained = mean + rng.normal(0, 1, (16, 200))
    unlearned = mean + 1.0 + rng.normal(0, 1, (16, 200))  # one standard deviation per example
    result = ulira(unlearned, retrained)
    # one pair: two unit Gaussians one apart, a rule on x alone has AUC Phi(1/sqrt2) ~ 0.76; fitted on 8 shadows
    assert 0.68 < result["auc"] < 0.8 and result["accuracy"] > 0.6
    assert result["model_auc"] == 1.0  # 200 examples' evidence summed: every model recognised


def test_a_population_attack_misses_what_the_per_example_one_sees():
    # every example is shifted, but half up and half down: the pooled confidences of the two families match,
    # the per-example Gaussians do not
    rng = np.random.default_rng(2)
    mean = rng.normal(0, 3, 100)
    shift = np.where(np.arange(100) % 2 == 0, 2.0, -2.0)
    retrained = mean + rng.normal(0, 1, (16, 100))
    unlearned = mean + shift + rng.normal(0, 1, (16, 100))
    assert abs(auc(unlearned.ravel(), retrained.ravel()) - 0.5) < 0.05
    assert ulira(unlearned, retrained)["auc"] > 0.85


def test_a_method_that_does_nothing_is_recognised_despite_zero_variance():
    rng = np.random.default_rng(3)
    retrained = rng.normal(0, 1, (8, 30))
    original = np.tile(rng.normal(0, 1, 30), (8, 1))  # the same model every time
    result = ulira(original, retrained)
    assert result["auc"] == 1.0 and result["accuracy"] == 1.0


def test_a_hand_checked_case():
    # one example, 4 models a side; seed 0 deals unlearned models into folds {2, 0} / {1, 3} and retrained ones
    # into {3, 2} / {1, 0}. Every shadow pair then has variance 2 on both sides, so the log-variance terms cancel
    # and a target x scores ((x - mean_r)^2 - (x - mean_u)^2) / 4. First fold: shadows u {1, 3} (mean 2) and
    # r {6, 4} (mean 5): unlearned x = 2 -> 9/4, x = 0 -> 21/4; retrained x = 7 -> -21/4, x = 5 -> -9/4.
    # Second fold: shadows u {0, 2} (mean 1), r {7, 5} (mean 6): x = 1 -> 25/4, 3 -> 5/4, 6 -> -25/4, 4 -> -5/4.
    unlearned = np.array([[0.0], [1.0], [2.0], [3.0]])
    retrained = np.array([[4.0], [6.0], [5.0], [7.0]])
    scores_u, scores_r = likelihood_ratio_scores(unlearned, retrained, seed=0)
    assert scores_u[:, 0] == pytest.approx([5.25, 6.25, 2.25, 1.25])
    assert scores_r[:, 0] == pytest.approx([-1.25, -6.25, -2.25, -5.25])
    result = ulira(unlearned, retrained)
    assert result["auc"] == 1.0 and result["accuracy"] == 1.0 and result["example_auc"][0] == 1.0
    # a different variance per family: the log-variance term enters (checked against the formula)
    scores_u, _ = likelihood_ratio_scores(np.array([[0.0], [1.0], [2.0], [3.0]]),
                                          np.array([[4.0], [8.0], [5.0], [7.0]]), seed=0)
    # first fold: unlearned shadows {1, 3} (mean 2, var 2), retrained shadows {8, 4} (mean 6, var 8); x = 2
    expected = -0.5 * (math.log(2 * math.pi * 2) + 0) + 0.5 * (math.log(2 * math.pi * 8) + 16 / 8)
    assert scores_u[2, 0] == pytest.approx(expected)


def test_global_variance_and_bad_input():
    rng = np.random.default_rng(4)
    u, r = rng.normal(0, 1, (6, 5)), rng.normal(0, 1, (6, 5))
    # every example a shifted copy of the first (equal variances): pooling them changes nothing
    same_u, same_r = u[:, :1] + np.arange(5), r[:, :1] + 2 * np.arange(5)
    pooled = likelihood_ratio_scores(same_u, same_r, num_folds=3, variance="global")
    own = likelihood_ratio_scores(same_u, same_r, num_folds=3, variance="per_example")
    assert all(np.allclose(a, b) for a, b in zip(pooled, own))
    # variances that differ between examples: the pooled one scores them otherwise
    spread_u, spread_r = u * np.arange(1, 6), r * np.arange(1, 6)
    pooled = likelihood_ratio_scores(spread_u, spread_r, num_folds=3, variance="global")
    own = likelihood_ratio_scores(spread_u, spread_r, num_folds=3, variance="per_example")
    assert not np.allclose(pooled[0], own[0])
    with pytest.raises(ValueError, match="same examples"):
        ulira(u, r[:, :4])
    with pytest.raises(ValueError, match="variance"):
        ulira(u, r, variance="pooled")
    with pytest.raises(ValueError, match="4 with 2 folds"):
        ulira(u[:3], r[:3])
