"""Drift watch: is the recent score distribution still the one the threshold was set on?

Two tests on a sliding window of the last ``window`` raw scores, every ``every`` new scores:

* **distribution** (one-sample Kolmogorov-Smirnov against the held-out normal scores the threshold
  came from, their percentiles in the threshold record ``Threshold.holdout_quantiles``, the
  reference CDF ``F`` linear between them)::

      D = sup_x |F_window(x) - F(x)|,    p = Q_KS(sqrt(n) D),  Q_KS(t) = 2 sum_k (-1)^(k-1) exp(-2 k^2 t^2)

  an alarm when ``p < alpha`` and ``D >= min_effect``: the effect floor keeps a tiny, harmless
  shift from alarming (the shipped detector scores new normal images a little lower than the
  cross-fitted ones the reference holds);
* **rate above threshold** (the decisions themselves): with ``k`` of the ``n`` window scores at or
  above the threshold, ``p = P(Binomial(n, target_fpr) >= k)``; an alarm when ``p < alpha``.

Either alarm raises ``alarm``. ``alpha`` is per test; tests repeat every ``every`` frames over
overlapping windows, so the false-alarm rate per frame is at most about ``2 alpha / every``.
A window that is not full yet is reported, never alarmed on.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from .errors import EdgesslError
from .thresholds import Threshold, binomial_sf


MIN_WINDOW = 10  # fewer scores say too little about a distribution


@dataclass(frozen=True)
class DriftConfig:
    """The window's length, how often it is tested, the per-test false-alarm probability and the
    smallest KS distance that alarms."""

    window: int = 100
    every: int = 25
    alpha: float = 1e-3
    min_effect: float = 0.15

    def __post_init__(self) -> None:
        if self.window < MIN_WINDOW or not 1 <= self.every <= self.window:
            raise EdgesslError(f"drift window {self.window} (at least {MIN_WINDOW}) and test interval {self.every} "
                               "(1 to the window) do not fit")
        if not 0 < self.alpha < 1 or not 0 <= self.min_effect < 1:
            raise EdgesslError("drift alpha must be in (0, 1) and min_effect in [0, 1)")


NO_PERCENTILES = ("the bundle's threshold records no held-out percentiles, so no drift watch; re-fit and "
                  "re-export to have one")


def drift_config(window: int | None) -> DriftConfig | None:
    """The watch for a window asked for: None gives ``DriftConfig()``, 0 no watch, N a window of N
    tested every ``min(every, N)`` scores."""
    if window == 0:
        return None
    return DriftConfig() if window is None else DriftConfig(window=window, every=min(DriftConfig.every, window))


@dataclass(frozen=True)
class DriftReport:
    alarm: bool
    statistic: float  # the KS distance D
    p_value: float  # of the KS test
    window: int  # scores in the window (less than the configured window until it fills)
    rate_above_threshold: float
    rate_p_value: float
    seen: int  # scores since the watch started
    alarms: int  # tests that alarmed since the watch started

    def to_dict(self) -> dict:
        return asdict(self)


def kolmogorov_sf(t: float) -> float:
    """``P(sqrt(n) D > t)`` for large ``n`` (Kolmogorov's distribution), by its alternating series."""
    if t <= 0:
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * (k * t) ** 2)), 0.0, 1.0))


class DriftWatch:
    """Feed raw scores with ``add``; ``report`` says where the watch stands."""

    def __init__(self, threshold: Threshold, config: DriftConfig | None = None):
        if len(threshold.holdout_quantiles) < 2:
            raise EdgesslError("the threshold records no held-out score percentiles to watch drift against; "
                               "re-fit the detector (`edgessl fit`) and re-export the bundle")
        self.config = config or DriftConfig()
        self.quantiles = np.asarray(threshold.holdout_quantiles, np.float64)
        self.levels = np.linspace(0.0, 1.0, len(self.quantiles))
        self.raw_threshold, self.target = threshold.raw_threshold, threshold.target_fpr
        self.scores: deque[float] = deque(maxlen=self.config.window)
        self.seen = self.alarms = 0
        self.last = self._test()

    def reference_cdf(self, x: np.ndarray) -> np.ndarray:
        """``F``: linear between the recorded percentiles (strictly increasing ones), 0 below, 1 above."""
        q, keep = self.quantiles, np.r_[True, np.diff(self.quantiles) > 0]
        return np.interp(x, q[keep], self.levels[keep], left=0.0, right=1.0)

    def add(self, raw_score: float) -> DriftReport:
        self.scores.append(float(raw_score))
        self.seen += 1
        if self.seen % self.config.every == 0:
            self.last = self._test()
            self.alarms += self.last.alarm
        return self.last

    def report(self) -> DriftReport:
        return self.last

    def _test(self) -> DriftReport:
        x = np.sort(np.asarray(self.scores, np.float64))
        n = len(x)
        if n == 0:
            return DriftReport(False, 0.0, 1.0, 0, 0.0, 1.0, self.seen, self.alarms)
        f = self.reference_cdf(x)
        i = np.arange(1, n + 1)
        d = float(max((i / n - f).max(), (f - (i - 1) / n).max()))
        p = kolmogorov_sf(np.sqrt(n) * d)
        above = int((x >= self.raw_threshold).sum())
        p_rate = binomial_sf(above, n, self.target)
        c = self.config
        alarm = n == c.window and ((p < c.alpha and d >= c.min_effect) or p_rate < c.alpha)
        return DriftReport(bool(alarm), d, p, n, above / n, p_rate, self.seen, self.alarms + int(alarm))


def batch_drift(threshold: Threshold, raw_scores: list[float]) -> DriftReport | None:
    """The two tests once over a whole batch of scores (a triage run; the window is the batch), or
    None for fewer than ``DriftConfig``'s least window or a threshold without percentiles."""
    if len(raw_scores) < MIN_WINDOW or len(threshold.holdout_quantiles) < 2:
        return None
    watch = DriftWatch(threshold, DriftConfig(window=len(raw_scores), every=len(raw_scores)))
    for s in raw_scores:
        watch.add(s)
    return watch.report()
