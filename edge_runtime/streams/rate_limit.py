"""Spacing work out in time: at most ``max_rate_hz`` starts per second.

A live consumer pairs it with one-frame drop-oldest slots: frames that arrive while it waits
replace each other, so the next start works on the newest frame and the rest are counted as dropped.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

POLL_S = 0.1  # how often a wait looks again, so a rate changed meanwhile takes effect


class RateLimiter:
    """Starts at least ``1 / max_rate_hz`` s apart (``max_rate_hz <= 0``: unlimited); the rate can change."""

    def __init__(self, max_rate_hz: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = float("-inf")
        self.set_rate(max_rate_hz)

    def set_rate(self, max_rate_hz: float) -> None:
        """The new rate applies from the last start on (a wait in progress notices it)."""
        self.period = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0

    def delay(self) -> float:
        """Seconds to wait before the next start is allowed (0 when it is allowed now)."""
        return max(0.0, self._last + self.period - self._clock())

    def start(self) -> None:
        """Record a start now; the next one is allowed one period later."""
        self._last = self._clock()

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next start is allowed; False when ``stop`` was set meanwhile."""
        while (delay := self.delay()) > 0:
            if stop.wait(min(delay, POLL_S)):
                return False
        return not stop.is_set()
