"""Plain-data pieces of the live node: stream health reports and the rate limiter (no ROS needed)."""

from __future__ import annotations

import math
import threading

import pytest

from edgessl.edge_runtime.streams.rate_limit import RateLimiter
from edgessl.edge_runtime.streams.health import HealthLevel, LatencyWindow, StreamStats

pytestmark = pytest.mark.ros


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_latency_window_percentiles_over_the_last_seconds():
    clock = Clock()
    w = LatencyWindow(window_s=10.0, size=100, clock=clock)
    assert math.isnan(w.percentile(50))
    for v in range(1000):
        w.add(v)
    assert len(w) == 100 and w.percentile(50) == pytest.approx(949.5) and w.percentile(99) == pytest.approx(998.01)
    clock.t += 5
    w.add(5.0)
    assert w.percentile(99) > 900  # one stall ...
    clock.t += 6
    assert len(w) == 1 and w.percentile(99) == 5.0  # ... is forgotten once older than the window
    clock.t += 11
    assert math.isnan(w.percentile(50))


def test_dropped_frames_and_a_slow_scorer_warn_beyond_the_rate_limit():
    clock = Clock()
    stats = StreamStats("/cam/image", clock=clock)
    for i in range(30):  # 30 frames received in 1 s, 27 scored: within the tolerance
        stats.record_received()
        if i % 10:
            stats.record_processed(5.0, 2.0)
    clock.t += 1
    assert stats.report(dropped=3).level == HealthLevel.OK
    for i in range(30):  # 30 received, 3 scored: 90% dropped
        stats.record_received()
        if i % 10 == 0:
            stats.record_processed(5.0, 2.0)
    clock.t += 1
    r = stats.report(dropped=30)
    assert r.level == HealthLevel.WARN and r.message == "dropping frames: scoring 3.0 fps of 30.0 fps received"
    for i in range(30):  # the same, under a 3 Hz limit: the drops are the limit's
        stats.record_received()
        if i % 10 == 0:
            stats.record_processed(5.0, 2.0)
    clock.t += 1
    assert stats.report(dropped=57, max_rate_hz=3.0).level == HealthLevel.OK
    for _ in range(30):  # frames arrive, none is scored: 0 fps
        stats.record_received()
    clock.t += 1
    r = stats.report(dropped=87, max_rate_hz=3.0)
    assert r.level == HealthLevel.WARN and "scoring 0.0 fps" in r.message and "limit 3 Hz" in r.message


def test_report_levels_and_values():
    clock = Clock()
    stats = StreamStats("/cam/image", {"backend": "ort-cpu"}, stale_after_s=5.0, clock=clock)
    clock.t += 3
    r = stats.report()
    assert r.level == HealthLevel.WARN and r.message == "no input received on /cam/image for 3 s"
    assert r.values["backend"] == "ort-cpu" and r.values["latency p99 (ms)"] == "n/a"
    for i in range(10):
        stats.record_received()
        stats.record_processed(latency_ms=10.0 + i, processing_ms=2.0)
    clock.t += 2
    r = stats.report(dropped=4)
    assert r.level == HealthLevel.OK and r.message == "processing 5.0 fps"
    assert r.values["frames received"] == "10" and r.values["frames dropped"] == "4"
    assert r.values["latency p50 (ms)"] == "14.5" and r.values["processing p99 (ms)"] == "2.0"
    stats.record_received()
    stats.record_failed("rgb8 image step 7 is smaller than width*bytes_per_pixel = 60")
    r = stats.report()
    assert r.level == HealthLevel.WARN and "1 frame(s) failed" in r.message and "step 7" in r.values["last error"]
    clock.t += 1
    assert stats.report().level == HealthLevel.OK  # failures are reported in the period they happen
    clock.t += 10
    r = stats.report()
    assert r.level == HealthLevel.WARN and r.message.startswith("input stalled")


def test_rate_limiter_spaces_starts():
    clock = Clock()
    limiter = RateLimiter(4.0, clock=clock)
    assert limiter.delay() == 0.0
    limiter.start()
    assert limiter.delay() == pytest.approx(0.25)
    clock.t += 0.1
    assert limiter.delay() == pytest.approx(0.15)
    clock.t += 0.2
    assert limiter.delay() == 0.0
    assert RateLimiter(0.0).period == 0.0
    stop = threading.Event()
    stop.set()
    limiter.start()
    assert limiter.wait(stop) is False  # a stop request ends the wait
