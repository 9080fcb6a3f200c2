"""The normal-only threshold rule: order-statistic math against scipy and simulation, normalisation, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.thresholds import (Threshold, binomial_sf, fit_threshold, fpr_confidence,
                                             order_statistic_rank, required_holdout)


@pytest.mark.parametrize("n,p", [(10, 0.3), (230, 0.01), (1000, 0.05), (5000, 0.001)])
def test_binomial_tail_matches_scipy(n, p):
    for m in (0, 1, 2, n // 10, n // 2, n):
        assert binomial_sf(m, n, p) == pytest.approx(stats.binom.sf(m - 1, n, p), rel=1e-9, abs=1e-300)


@pytest.mark.parametrize("n,k,a", [(100, 99, 0.05), (230, 230, 0.01), (500, 490, 0.02), (50, 40, 0.3)])
def test_fpr_of_kth_order_statistic_is_beta(n, k, a):
    """FPR of s_(k) ~ Beta(n+1-k, k): the rule's confidence is that Beta's CDF at the target."""
    assert fpr_confidence(n, k, a) == pytest.approx(stats.beta.cdf(a, n + 1 - k, k), rel=1e-9)


def test_required_holdout_is_the_closed_form():
    assert required_holdout(0.01, 0.9) == 230 == math.ceil(math.log(0.1) / math.log(0.99))
    assert required_holdout(0.05, 0.9) == 45
    assert required_holdout(0.1, 0.95) == 29


def test_rank_is_the_smallest_that_meets_the_confidence():
    for n, a, c in [(230, 0.01, 0.9), (1000, 0.01, 0.9), (158, 0.05, 0.9), (5000, 0.001, 0.99)]:
        k = order_statistic_rank(n, a, c)
        assert fpr_confidence(n, k, a) >= c
        assert k == 1 or fpr_confidence(n, k - 1, a) < c


def test_simulated_fpr_is_under_target_with_the_stated_confidence():
    """Uniform normal scores: the true FPR of the chosen threshold is 1 - t, known exactly."""
    rng = np.random.default_rng(0)
    n, target, conf, reps = 300, 0.02, 0.9, 4000
    samples = rng.random((reps, n))
    th = fit_threshold(samples[0], target, conf, strict=True)
    true_fpr = 1.0 - np.sort(samples, axis=1)[:, th.k - 1]  # the same rank for every repetition
    covered = float((true_fpr <= target).mean())
    se = math.sqrt(th.achieved_confidence * (1 - th.achieved_confidence) / reps)
    assert th.achieved_confidence >= conf
    assert abs(covered - th.achieved_confidence) < 4 * se
    assert covered > conf - 4 * se


def test_normalisation_maps_median_to_zero_and_threshold_to_one():
    scores = np.random.default_rng(1).gamma(2.0, size=500)
    th = fit_threshold(scores, 0.05, 0.9, strict=True)
    assert th.normalise(np.median(scores)) == pytest.approx(0.0, abs=1e-12)
    assert th.normalise(th.raw_threshold) == pytest.approx(1.0)
    assert th.is_anomaly(th.raw_threshold) and not th.is_anomaly(np.nextafter(th.raw_threshold, 0))
    assert th.holdout_fpr == pytest.approx((scores >= th.raw_threshold).mean())
    assert th.raw_threshold == np.sort(scores)[th.k - 1]
    assert th.n_holdout == 500 and th.holdout_summary["max"] == scores.max()


def test_threshold_record_round_trips_through_json(tmp_path):
    th = fit_threshold(np.random.default_rng(2).normal(size=300), 0.05, 0.9, strict=True)
    th.save(tmp_path / "threshold.json")
    assert Threshold.load(tmp_path / "threshold.json") == th
    assert Threshold.from_dict(th.to_dict()) == th


def test_too_few_holdout_images_says_how_many_are_needed():
    with pytest.raises(EdgesslError, match="at least 230"):
        fit_threshold(np.arange(229.0), 0.01, 0.9, strict=True)
    fit_threshold(np.arange(230.0), 0.01, 0.9, strict=True)


@pytest.mark.parametrize("scores,match", [
    (np.r_[np.arange(100.0), np.nan], "NaN"),
    (np.ones(100), "too few distinct scores"),
])
def test_bad_holdout_scores(scores, match):
    with pytest.raises(EdgesslError, match=match):
        fit_threshold(scores, 0.1, 0.9, strict=True)


@pytest.mark.parametrize("a,c", [(0.0, 0.9), (1.0, 0.9), (0.01, 1.0), (0.01, 0.0)])
def test_rates_out_of_range(a, c):
    with pytest.raises(EdgesslError):
        fit_threshold(np.arange(1000.0), a, c, strict=True)


@pytest.mark.parametrize("n,c", [(60, 0.9), (12, 0.95), (229, 0.9), (1, 0.5)])
def test_achievable_fpr_is_the_tightest_target_n_scores_support(n, c):
    from edgessl.edge_runtime.thresholds import achievable_fpr

    a = achievable_fpr(n, c)
    assert fpr_confidence(n, n, a) >= c > fpr_confidence(n, n, a * (1 - 1e-6))
    assert required_holdout(a, c) <= n < required_holdout(a * 0.99, c)


def test_too_few_scores_loosen_the_target_unless_strict():
    from edgessl.edge_runtime.thresholds import achievable_fpr

    scores = np.random.default_rng(2).random(60)
    with pytest.raises(EdgesslError, match="needs at least 230"):
        fit_threshold(scores, 0.01, 0.9, strict=True)
    th = fit_threshold(scores, 0.01, 0.9, strict=False)
    assert (th.requested_target_fpr, th.target_fpr, th.k) == (0.01, achievable_fpr(60, 0.9), 60)
    assert th.raw_threshold == scores.max()
    assert Threshold.from_dict(th.to_dict()) == th
    enough = fit_threshold(np.random.default_rng(3).random(300), 0.01, 0.9, strict=False)
    assert enough.requested_target_fpr is None and enough.target_fpr == 0.01
