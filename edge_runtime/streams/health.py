"""Health of a live image stream as plain data: counts, rates, latency percentiles, last error.

A long-running consumer (the ROS node, a camera loop) records every frame received, processed or
failed (its drop-oldest queue counts the dropped ones); ``report(dropped)`` summarises the period
since the previous report. The levels use ``diagnostic_msgs/DiagnosticStatus`` numbering so a ROS
adapter passes them straight through.

WARN, in this order: no input yet; frames failed in the period; the input stalled; frames dropped
(the scoring rate below the input rate, or below ``max_rate_hz`` when that limit is lower, by
more than ``DROP_TOLERANCE`` of it, once the period received ``MIN_FRAMES``); the scores drifted
(the stream's ``DriftWatch`` alarmed on its last test: ``edge_runtime/drift.py``). Latency percentiles
are over the last ``LATENCY_WINDOW_S`` seconds, so one stall or one garbage stamp leaves them
once it is that old.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable

import numpy as np

from ..drift import DriftWatch


class HealthLevel(IntEnum):
    OK = 0
    WARN = 1
    ERROR = 2


@dataclass
class HealthReport:
    level: HealthLevel
    message: str
    values: dict[str, str] = field(default_factory=dict)


LATENCY_WINDOW_S = 10.0
DROP_TOLERANCE = 0.1  # a scoring rate this far below the expected one is a WARN
MIN_FRAMES = 5  # frames a period needs before its rates are judged


class LatencyWindow:
    """Latencies in ms of the last ``window_s`` seconds (at most ``size`` of them); percentiles by
    linear interpolation (numpy's default)."""

    def __init__(self, window_s: float = LATENCY_WINDOW_S, size: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.window_s, self._clock = window_s, clock
        self._values: deque[tuple[float, float]] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self._values.append((self._clock(), float(ms)))

    def _recent(self) -> list[float]:
        start = self._clock() - self.window_s
        while self._values and self._values[0][0] < start:
            self._values.popleft()
        return [v for _, v in self._values]

    def __len__(self) -> int:
        return len(self._recent())

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100); NaN when the window is empty."""
        values = self._recent()
        return float(np.percentile(values, q)) if values else float("nan")


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"


class StreamStats:
    """Thread-safe counters of one input stream, summarised per reporting period.

    ``latency`` is the age of a frame when its result is ready (result time minus capture
    stamp); ``processing`` is the runtime's own time for the frame (preprocess + inference + score);
    ``drift`` watches the frames' raw scores (None: not watched).
    """

    def __init__(self, source: str, info: dict[str, str] | None = None, stale_after_s: float = 5.0,
                 window_s: float = LATENCY_WINDOW_S, clock: Callable[[], float] = time.monotonic,
                 drift: DriftWatch | None = None) -> None:
        self.source, self.info, self.stale_after_s, self.drift = source, dict(info or {}), stale_after_s, drift
        self._clock = clock
        self._lock = threading.Lock()
        self.latency, self.processing = LatencyWindow(window_s, clock=clock), LatencyWindow(window_s, clock=clock)
        self.received = self.processed = self.failed = 0
        self.last_error = ""
        self._started = self._last_report = clock()
        self._last_input: float | None = None
        self._at_last_report = (0, 0, 0)  # received, processed, failed

    def record_received(self) -> None:
        with self._lock:
            self.received += 1
            self._last_input = self._clock()

    def record_processed(self, latency_ms: float, processing_ms: float, raw_score: float | None = None) -> None:
        with self._lock:
            self.processed += 1
            self.latency.add(latency_ms)
            self.processing.add(processing_ms)
            if self.drift is not None and raw_score is not None:
                self.drift.add(raw_score)

    def record_failed(self, error: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = error

    def report(self, dropped: int = 0, max_rate_hz: float = 0.0) -> HealthReport:
        """Level, one-line message and key/value strings for the period since the last report;
        ``dropped`` is the total of frames dropped so far (the queue's count); ``max_rate_hz`` the
        consumer's rate limit (0: none), which drops frames on purpose."""
        with self._lock:
            now = self._clock()
            elapsed = max(now - self._last_report, 1e-9)
            prev_received, prev_processed, prev_failed = self._at_last_report
            received = self.received - prev_received
            input_fps, fps = received / elapsed, (self.processed - prev_processed) / elapsed
            new_failures = self.failed - prev_failed
            self._at_last_report = (self.received, self.processed, self.failed)
            self._last_report = now
            expected = input_fps if max_rate_hz <= 0 else min(input_fps, max_rate_hz)
            level, message = self._status(now, fps, new_failures)
            if level == HealthLevel.OK and received >= MIN_FRAMES and fps < (1 - DROP_TOLERANCE) * expected:
                level, message = HealthLevel.WARN, (f"dropping frames: scoring {fps:.1f} fps of {input_fps:.1f} fps "
                                                    "received" + (f" (limit {max_rate_hz:g} Hz)" if max_rate_hz > 0 else ""))
            values = {
                **self.info,
                "input topic": self.source,
                "frames received": str(self.received),
                "frames processed": str(self.processed),
                "frames dropped": str(dropped),
                "frames failed": str(self.failed),
                "input rate (fps)": f"{input_fps:.1f}",
                "processing rate (fps)": f"{fps:.1f}",
                "latency window (s)": f"{self.latency.window_s:g}",
                "latency p50 (ms)": _ms(self.latency.percentile(50)),
                "latency p99 (ms)": _ms(self.latency.percentile(99)),
                "processing p50 (ms)": _ms(self.processing.percentile(50)),
                "processing p99 (ms)": _ms(self.processing.percentile(99)),
                "last error": self.last_error or "none",
                **self._drift_values(),
            }
            if level == HealthLevel.OK and self.drift is not None and self.drift.report().alarm:
                d = self.drift.report()
                level, message = HealthLevel.WARN, (f"scores drifted from the held-out normal ones: KS {d.statistic:.3f} "
                                                    f"(p {d.p_value:.2g}), {d.rate_above_threshold:.3f} above the "
                                                    f"threshold (p {d.rate_p_value:.2g}) over the last {d.window}")
            return HealthReport(level, message, values)

    def _drift_values(self) -> dict[str, str]:
        if self.drift is None:
            return {"drift": "not watched"}
        d, window = self.drift.report(), self.drift.config.window
        state = "ALARM" if d.alarm else "none" if d.window == window else f"filling ({d.window} of {window})"
        return {"drift": state, "drift KS": f"{d.statistic:.3f}", "drift p": f"{d.p_value:.3g}",
                "rate above threshold": f"{d.rate_above_threshold:.3f}", "drift alarms": str(d.alarms)}

    def _status(self, now: float, fps: float, new_failures: int) -> tuple[HealthLevel, str]:
        if self._last_input is None:
            return HealthLevel.WARN, f"no input received on {self.source} for {now - self._started:.0f} s"
        if new_failures:
            return HealthLevel.WARN, f"{new_failures} frame(s) failed since the last report: {self.last_error}"
        idle = now - self._last_input
        if idle > self.stale_after_s:
            return HealthLevel.WARN, f"input stalled: no frame on {self.source} for {idle:.0f} s"
        return HealthLevel.OK, f"processing {fps:.1f} fps"
