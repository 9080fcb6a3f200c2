"""Fit the combined detector (``edge_runtime.detectors.combined``): its parts fitted on every normal
image, each standardised by the median and the upper spread of its cross-fitted scores."""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors import CombinedDetector, Detector
from edgessl.edge_runtime.errors import EdgesslError

PARTS = ("gaussian", "knn", "patch")  # measured: benchmarks/bench_quality.py, docs/detection.md
# The scale's upper percentile. Anomalies score above the normal median, so a part's scale is the spread
# of its normal scores there: a part that often scores normal images high counts less. Against the
# inter-quartile range it lowered the worst regret on the default runs, and on 33 trained and 14
# untrained runs it was not chosen on (benchmarks/bench_pixel_floor.py, docs/detection.md); the 95th
# did about as well, the 99th worse on trained backbones.
UPPER = 90


def standardisation(held_out: np.ndarray) -> tuple[float, float]:
    """``(m, s)`` of a part's cross-fitted normal scores: their median ``m`` and upper spread ``s``,
    the ``UPPER``-th percentile minus the median."""
    median, upper = np.percentile(np.asarray(held_out, np.float64), [50, UPPER])
    if not upper > median:
        raise EdgesslError(f"a detector's scores of the normal images do not spread above their median (its "
                           f"{UPPER}th percentile is the median), so they cannot be standardised; check that the "
                           "backbone and the images are not degenerate")
    return float(median), float(upper - median)


def fit_combined(parts: list[Detector], held_out: list[np.ndarray]) -> CombinedDetector:
    """The combined detector of ``parts``, with the standardisation of each part's held-out scores."""
    stats = [standardisation(h) for h in held_out]
    return CombinedDetector(parts, [m for m, _ in stats], [s for _, s in stats])


def combined_scores(held_out: list[np.ndarray]) -> np.ndarray:
    """The combined held-out score of each image: the mean of its parts' standardised held-out scores."""
    stats = [standardisation(h) for h in held_out]
    return np.mean([(np.asarray(h, np.float64) - m) / s for h, (m, s) in zip(held_out, stats)], axis=0)
