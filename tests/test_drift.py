"""The drift watch: quiet on scores from the held-out distribution, an alarm on a shift in the
distribution or in the rate above the threshold, within a window; its bad input."""

from __future__ import annotations

import json

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


def test_a_batch_is_tested_once_as_a_whole():
    from edgessl.edge_runtime.drift import batch_drift

    same, brighter = RNG.gamma(4.0, 1.0, 120), RNG.gamma(4.0, 1.0, 120) * 1.6
    assert not batch_drift(THRESHOLD, list(same)).alarm
    r = batch_drift(THRESHOLD, list(brighter))
    assert r.alarm and r.window == 120 and r.seen == 120
    assert batch_drift(THRESHOLD, list(same[:9])) is None  # too few to say anything


def test_a_stream_whose_scores_drift_reports_warn_with_the_figures():
    from edgessl.edge_runtime.streams.health import HealthLevel, StreamStats

    stats = StreamStats("/cam", drift=DriftWatch(THRESHOLD))
    for s in RNG.gamma(4.0, 1.0, 100):
        stats.record_received()
        stats.record_processed(5.0, 2.0, float(s))
    quiet = stats.report()
    assert quiet.level == HealthLevel.OK and quiet.values["drift"] == "none"
    for s in RNG.gamma(4.0, 1.0, 100) * 1.6:
        stats.record_received()
        stats.record_processed(5.0, 2.0, float(s))
    alarmed = stats.report()
    assert alarmed.level == HealthLevel.WARN and alarmed.message.startswith("scores drifted")
    assert alarmed.values["drift"] == "ALARM" and float(alarmed.values["drift KS"]) > 0.3
    assert StreamStats("/cam").report().values["drift"] == "not watched"


def test_triage_reports_its_batch_against_the_held_out_normal_scores(tmp_path, capsys):
    import cv2

    from edgessl.cli.main import main
    from edgessl.edge_runtime.data.datasets import open_dataset
    from runtime_bundle import make_bundle

    bundle = make_bundle(tmp_path / "bundle", "knn")  # digits, normal class 0
    test = open_dataset("digits", "test")
    summaries = {}
    for digit in (0, 7):
        folder = tmp_path / f"digit{digit}"
        folder.mkdir()
        for i in np.flatnonzero(test.labels == digit):
            cv2.imwrite(str(folder / f"{i}.png"), test.image(int(i)))
        assert main(["triage", "--bundle", str(bundle), "--source", str(folder), "--out", str(tmp_path / f"t{digit}"),
                     "--no-progress", "--json"]) == 0
        summaries[digit] = json.loads(capsys.readouterr().out)
    same, other = summaries[0]["drift"], summaries[7]["drift"]
    assert not same["alarm"] and same["window"] == summaries[0]["n_scored"]
    assert other["alarm"] and other["statistic"] > 0.5
    assert "DRIFTED" in (tmp_path / "t7" / "report.html").read_text()
