"""The drift watch: quiet on scores from the held-out distribution, an alarm on a shift in the
distribution or in the rate above the threshold, within a window; its bad input."""

from __future__ import annotations

import numpy as np
import pytest

from edgessl.edge_runtime.drift import DriftConfig, DriftWatch, kolmogorov_sf
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.thresholds import fit_threshold

RNG = np.random.default_rng(0)
HELD = RNG.gamma(4.0, 1.0, 2000)  # held-out normal scores: skewed, as distances are
THRESHOLD = fit_threshold(HELD, 0.01, 0.9, strict=True)


def _alarms(scores: np.ndarray, config: DriftConfig | None = None) -> list[int]:
    watch = DriftWatch(THRESHOLD, config)
    return [i for i, s in enumerate(scores) if watch.add(s).alarm and (i + 1) % watch.config.every == 0]


def test_kolmogorov_tail_matches_its_known_values():
    assert kolmogorov_sf(0.0) == 1.0
    assert kolmogorov_sf(1.3581) == pytest.approx(0.05, abs=2e-4)  # the classic 5% critical value
    assert kolmogorov_sf(1.9495) == pytest.approx(0.001, abs=2e-5)


def test_in_distribution_scores_raise_no_alarm_over_many_windows():
    fresh = RNG.gamma(4.0, 1.0, 10_000)
    assert len(_alarms(fresh)) <= 10_000 // 25 * 2 * 1e-3 * 5  # tests x (two tests x alpha), with room


def test_a_shifted_distribution_alarms_within_one_window():
    normal, shifted = RNG.gamma(4.0, 1.0, 300), RNG.gamma(4.0, 1.0, 300) * 1.6
    alarms = _alarms(np.r_[normal, shifted])
    assert alarms and 300 <= alarms[0] < 300 + 100  # after the shift, before a full window of it
    watch = DriftWatch(THRESHOLD)
    for s in np.r_[normal, shifted]:
        watch.add(s)
    r = watch.report()
    assert r.alarm and r.statistic > 0.3 and r.p_value < 1e-6 and r.window == 100 and r.seen == 600


def test_more_decisions_above_the_threshold_than_the_target_allows_alarm():
    scores = HELD[:100].copy()
    scores[:8] = THRESHOLD.raw_threshold * 2  # 8% above a 1% threshold, the rest unchanged
    watch = DriftWatch(THRESHOLD, DriftConfig(min_effect=0.99))  # the distribution test cannot alarm
    for s in RNG.permutation(scores):
        watch.add(s)
    assert watch.report().alarm and watch.report().rate_above_threshold == 0.08


def test_a_window_not_yet_full_reports_but_never_alarms():
    watch = DriftWatch(THRESHOLD)
    for s in np.full(75, THRESHOLD.raw_threshold * 5):
        r = watch.add(s)
    assert r.window == 75 and not r.alarm and r.rate_above_threshold == 1.0


def test_bad_configs_and_a_threshold_without_percentiles_are_one_line():
    with pytest.raises(EdgesslError, match="do not fit"):
        DriftConfig(window=50, every=60)
    with pytest.raises(EdgesslError, match="alpha"):
        DriftConfig(alpha=0)
    from dataclasses import replace

    with pytest.raises(EdgesslError, match="re-fit the detector"):
        DriftWatch(replace(THRESHOLD, holdout_quantiles=()))
