"""Fit the kNN detector: a memory bank of normal embeddings, optionally a greedy coreset of them."""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors import KnnDetector
from edgessl.edge_runtime.detectors.neighbours import l2_normalise
from edgessl.edge_runtime.errors import EdgesslError

from .coreset import check_coreset, greedy_coreset


def fit_knn(embeddings: np.ndarray, k: int = 5, coreset: int = 0, seed: int = 0) -> KnnDetector:
    """``coreset`` 0 keeps every embedding; otherwise that many, chosen on the unit sphere (cosine)."""
    bank = l2_normalise(embeddings)
    if k < 1:
        raise EdgesslError(f"--k must be at least 1 (got {k})")
    check_coreset(coreset, len(bank), "normal training images")
    if coreset:
        bank = bank[greedy_coreset(bank, coreset, seed=seed)]
    if k > len(bank):
        raise EdgesslError(f"--k {k} is more than the {len(bank)} embeddings in the memory bank; lower --k")
    return KnnDetector(bank, k)
