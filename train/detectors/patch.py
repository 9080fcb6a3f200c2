"""Fit the patch detector: a greedy k-center coreset of normal training patch features (PatchCore)."""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors import PatchDetector
from edgessl.edge_runtime.errors import EdgesslError

from .coreset import check_coreset, greedy_coreset

DEFAULT_CORESET = 2048  # the bank when no size is given (or every patch, when fewer)


def fit_patch(patch_rows: np.ndarray, k: int = 1, coreset: int | None = None, seed: int = 0,
              top: int = 1) -> PatchDetector:
    """``patch_rows`` ``(P, C)``: patch features of normal images; a bank of ``coreset`` of them
    (None: ``DEFAULT_CORESET``); the image score is the mean of the ``top`` largest map values
    (1: the max; 0: every value, measured against the max and top-k means: docs/detection.md)."""
    size = min(DEFAULT_CORESET, len(patch_rows)) if coreset is None else coreset
    if k < 1 or size < 1:
        raise EdgesslError(f"--k and --coreset must be at least 1 (got {k} and {size})")
    check_coreset(size, len(patch_rows), "patch features sampled from the normal training images")
    if top < 0:
        raise EdgesslError(f"--top must be 0 (the whole map) or more (got {top})")
    if k > size:
        raise EdgesslError(f"--k {k} is more than the {size} patches in the memory bank; lower --k")
    bank = np.asarray(patch_rows, np.float32)[greedy_coreset(patch_rows, size, seed=seed)]
    return PatchDetector(bank, k, top)
