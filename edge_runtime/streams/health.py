"""Health of a live image stream as plain data: counts, rates, latency percentiles, last error.

A long-running consumer (the ROS node, a camera loop) records every frame received, processed or
failed (its drop-oldest queue counts the dropped ones); ``report(dropped)`` summarises the period
since the previous report. The levels use ``diagnostic_msgs/DiagnosticStatus`` numbering so a ROS
adapter passes them straight through.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Callable

import numpy as np


class HealthLevel(IntEnum):
    OK = 0
    WARN = 1
    ERROR = 2


@dataclass
class HealthReport:
    level: HealthLevel
    message: str
    values: dict[str, str] = field(default_factory=dict)


class LatencyWindow:
    """The last ``size`` latencies in ms; percentiles by linear interpolation (numpy's default)."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, ms: float) -> None:
        self._values.append(float(ms))

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0-100); NaN when empty."""
        return float(np.percentile(np.fromiter(self._values, float), q)) if self._values else float("nan")


def _ms(value: float) -> str:
    return "n/a" if value != value else f"{value:.1f}"


class StreamStats:
    """Thread-safe counters of one input stream, summarised per reporting period.

    ``latency`` is the age of a frame when its result is ready (result time minus capture
    stamp); ``processing`` is the runtime's own time for the frame (preprocess + inference + score).
    """

    def __init__(self, source: str, info: dict[str, str] | None = None, stale_after_s: float = 5.0,
                 window: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        self.source, self.info, self.stale_after_s = source, dict(info or {}), stale_after_s
        self._clock = clock
        self._lock = threading.Lock()
        self.latency, self.processing = LatencyWindow(window), LatencyWindow(window)
        self.received = self.processed = self.failed = 0
        self.last_error = ""
        self._started = self._last_report = clock()
        self._last_input: float | None = None
        self._at_last_report = (0, 0, 0)  # received, processed, failed

    def record_received(self) -> None:
        with self._lock:
            self.received += 1
            self._last_input = self._clock()

    def record_processed(self, latency_ms: float, processing_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self.latency.add(latency_ms)
            self.processing.add(processing_ms)

    def record_failed(self, error: str) -> None:
        with self._lock:
            self.failed += 1
            self.last_error = error

    def report(self, dropped: int = 0) -> HealthReport:
        """Level, one-line message and key/value strings for the period since the last report;
        ``dropped`` is the total of frames dropped so far (the queue's count)."""
        with self._lock:
            now = self._clock()
            elapsed = max(now - self._last_report, 1e-9)
            prev_received, prev_processed, prev_failed = self._at_last_report
            input_fps = (self.received - prev_received) / elapsed
            fps = (self.processed - prev_processed) / elapsed
            new_failures = self.failed - prev_failed
            self._at_last_report = (self.received, self.processed, self.failed)
            self._last_report = now
            level, message = self._status(now, fps, new_failures)
            values = {
                **self.info,
                "input topic": self.source,
                "frames received": str(self.received),
                "frames processed": str(self.processed),
                "frames dropped": str(dropped),
                "frames failed": str(self.failed),
                "input rate (fps)": f"{input_fps:.1f}",
                "processing rate (fps)": f"{fps:.1f}",
                "latency p50 (ms)": _ms(self.latency.percentile(50)),
                "latency p99 (ms)": _ms(self.latency.percentile(99)),
                "processing p50 (ms)": _ms(self.processing.percentile(50)),
                "processing p99 (ms)": _ms(self.processing.percentile(99)),
                "last error": self.last_error or "none",
            }
            return HealthReport(level, message, values)

    def _status(self, now: float, fps: float, new_failures: int) -> tuple[HealthLevel, str]:
        if self._last_input is None:
            return HealthLevel.WARN, f"no input received on {self.source} for {now - self._started:.0f} s"
        if new_failures:
            return HealthLevel.WARN, f"{new_failures} frame(s) failed since the last report: {self.last_error}"
        idle = now - self._last_input
        if idle > self.stale_after_s:
            return HealthLevel.WARN, f"input stalled: no frame on {self.source} for {idle:.0f} s"
        return HealthLevel.OK, f"processing {fps:.1f} fps"
