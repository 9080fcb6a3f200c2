"""Gaussian detector: Mahalanobis distance of the embedding to the normal images' Gaussian.

    raw(x) = sqrt( (x - mu)^T P (x - mu) ),

``mu`` the mean of the normal training embeddings and ``P`` the inverse of their shrunk
(Ledoit-Wolf) covariance, fitted in ``train/detectors/gaussian.py``. Computed in float64.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import EdgesslError
from .base import Detector, DetectorOutput, array_param

BLOCK_ROWS = 4096


class GaussianDetector(Detector):
    kind = "gaussian"
    inputs = ("embedding",)

    def __init__(self, mean: np.ndarray, precision: np.ndarray):
        self.mean = np.asarray(mean, np.float64)
        self.precision = np.asarray(precision, np.float64)

    def score(self, outputs: Mapping[str, np.ndarray]) -> DetectorOutput:
        x = self.output(outputs, "embedding", 2, len(self.mean))
        raw = np.empty(len(x), np.float64)
        for s in range(0, len(x), BLOCK_ROWS):
            d = x[s : s + BLOCK_ROWS].astype(np.float64) - self.mean
            raw[s : s + BLOCK_ROWS] = np.sqrt(np.maximum(np.einsum("ij,ij->i", d @ self.precision, d), 0.0))
        return DetectorOutput(raw)

    def params(self) -> dict:
        return {"dim": len(self.mean)}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"mean": self.mean, "precision": self.precision}

    @classmethod
    def from_parts(cls, params: dict, arrays: dict[str, np.ndarray]) -> "GaussianDetector":
        mean, precision = array_param(arrays, "mean", 1, cls.kind), array_param(arrays, "precision", 2, cls.kind)
        if precision.shape != (len(mean), len(mean)):
            raise EdgesslError(f"the gaussian detector's precision matrix has shape {precision.shape}, not "
                               f"{(len(mean), len(mean))} (its mean has {len(mean)} values)")
        return cls(mean, precision)
