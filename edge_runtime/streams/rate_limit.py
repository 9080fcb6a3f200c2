"""Spacing work out in time: at most ``max_rate_hz`` starts per second.

A live consumer pairs it with ``prefetch.DropOldestQueue(1)``: frames that arrive while it waits
replace each other, so the next start works on the newest frame and the rest are counted as dropped.
"""

from __future__ import annotations

import threading
import time
from typing import Callable


class RateLimiter:
    """Starts at least ``1 / max_rate_hz`` s apart (``max_rate_hz <= 0``: unlimited)."""

    def __init__(self, max_rate_hz: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.period = 1.0 / max_rate_hz if max_rate_hz > 0 else 0.0
        self._clock = clock
        self._next = float("-inf")

    def delay(self) -> float:
        """Seconds to wait before the next start is allowed (0 when it is allowed now)."""
        return max(0.0, self._next - self._clock())

    def start(self) -> None:
        """Record a start now; the next one is allowed one period later."""
        self._next = self._clock() + self.period

    def wait(self, stop: threading.Event) -> bool:
        """Sleep until the next start is allowed; False when ``stop`` was set meanwhile."""
        return not stop.wait(self.delay())
