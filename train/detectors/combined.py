"""Fit the combined detector (``edge_runtime.detectors.combined``): its parts fitted on every normal
image, each standardised by the median and inter-quartile range of its cross-fitted scores."""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors import CombinedDetector, Detector
from edgessl.edge_runtime.errors import EdgesslError

PARTS = ("gaussian", "knn", "patch")  # measured: benchmarks/bench_quality.py, docs/detection.md


def standardisation(held_out: np.ndarray) -> tuple[float, float]:
    """The median and inter-quartile range of a part's cross-fitted normal scores."""
    q1, median, q3 = np.percentile(np.asarray(held_out, np.float64), [25, 50, 75])
    if not q3 > q1:
        raise EdgesslError("a detector gave (almost) the same score to every normal image, so its scores cannot "
                           "be standardised; check that the backbone and the images are not degenerate")
    return float(median), float(q3 - q1)


def fit_combined(parts: list[Detector], held_out: list[np.ndarray]) -> CombinedDetector:
    """The combined detector of ``parts``, with the standardisation of each part's held-out scores."""
    stats = [standardisation(h) for h in held_out]
    return CombinedDetector(parts, [m for m, _ in stats], [s for _, s in stats])


def combined_scores(held_out: list[np.ndarray]) -> np.ndarray:
    """The combined held-out score of each image: the mean of its parts' standardised held-out scores."""
    stats = [standardisation(h) for h in held_out]
    return np.mean([(np.asarray(h, np.float64) - m) / s for h, (m, s) in zip(held_out, stats)], axis=0)
