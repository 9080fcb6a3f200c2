"""Fit the patch detector: a greedy k-center coreset of normal training patch features (PatchCore)."""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors import PatchDetector
from edgessl.edge_runtime.errors import EdgesslError

from .coreset import check_coreset, greedy_coreset

DEFAULT_CORESET = 2048
DEFAULT_TOP = 1  # image score = the map's max (measured against top-k means: docs/detection.md)


def fit_patch(patch_rows: np.ndarray, k: int = 1, coreset: int = 0, seed: int = 0,
              top: int = DEFAULT_TOP) -> PatchDetector:
    """``patch_rows`` ``(P, C)``: patch features of normal images; ``coreset`` 0 means ``DEFAULT_CORESET``;
    the image score is the mean of the ``top`` largest map values."""
    size = coreset or min(DEFAULT_CORESET, len(patch_rows))
    if k < 1:
        raise EdgesslError(f"--k must be at least 1 (got {k})")
    check_coreset(size, len(patch_rows), "patch features sampled from the normal training images")
    if top < 1:
        raise EdgesslError(f"--top must be at least 1 (got {top})")
    if k > size:
        raise EdgesslError(f"--k {k} is more than the {size} patches in the memory bank; lower --k")
    bank = np.asarray(patch_rows, np.float32)[greedy_coreset(patch_rows, size, seed=seed)]
    return PatchDetector(bank, k, top)
