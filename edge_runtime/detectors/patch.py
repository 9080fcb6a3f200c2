"""Patch detector (PatchCore style): per-location distance to a memory bank of normal patch features.

For every location (i, j) of the ``patches`` output ``(B, C, h, w)``:

    map(i, j) = 1/k * sum_{n in kNN(f_ij)} ||f_ij - m_n||_2      (Euclidean, k = 1 by default)
    raw       = mean of the ``top`` largest map(i, j)        (top = 1: the max; 0: every location)

over a memory bank ``m`` of normal training patch features (a greedy k-center coreset:
``train/detectors/patch.py``). The map is at feature resolution; ``edge_runtime.heatmaps``
upsamples it to the model input (bilinear, OpenCV) for display and pixel metrics.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .bank_growth import grow_bank
from .base import Detector, DetectorOutput, array_param, int_param
from .neighbours import nearest, squared_norms

BLOCK_IMAGES = 64
MAX_TOP = 1 << 20  # more than any feature map has locations (``top`` is clipped to them)


class PatchDetector(Detector):
    kind = "patch"
    inputs = ("patches",)
    has_maps = True
    blas_bound = True

    def __init__(self, bank: np.ndarray, k: int = 1, top: int = 1):
        self.bank = np.asarray(bank, np.float32)
        self.bank_sq = squared_norms(self.bank)
        self.k = int(k)
        self.top = int(top)

    def score(self, outputs: Mapping[str, np.ndarray]) -> DetectorOutput:
        x = self.output(outputs, "patches", 4, self.bank.shape[1])
        b, c, h, w = x.shape
        maps = np.empty((b, h, w), np.float32)
        for s in range(0, b, BLOCK_IMAGES):
            rows = x[s : s + BLOCK_IMAGES].transpose(0, 2, 3, 1).reshape(-1, c)
            sq, _ = nearest(rows, self.bank, self.k, self.bank_sq)
            maps[s : s + BLOCK_IMAGES] = np.sqrt(sq).mean(axis=1).reshape(-1, h, w)
        flat = maps.reshape(b, h * w)
        top = self.locations_scored(h * w)
        raw = -np.partition(-flat, top - 1, axis=1)[:, :top].mean(axis=1)
        return DetectorOutput(raw.astype(np.float64), maps)

    def locations_scored(self, locations: int) -> int:
        """How many of a map's ``locations`` the image score averages (the largest ones)."""
        return locations if self.top == 0 else min(self.top, locations)

    def params(self) -> dict:
        score = {0: "mean", 1: "max"}.get(self.top, f"mean of top {self.top}")
        return {"k": self.k, "bank_size": len(self.bank), "distance": "euclidean", "image_score": score,
                "top": self.top}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank}

    def banks(self) -> dict[str, np.ndarray]:
        return {self.kind: self.bank}

    def grown(self, outputs: Mapping[str, np.ndarray], max_rows: int) -> "PatchDetector":
        x = self.output(outputs, "patches", 4, self.bank.shape[1])
        rows = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
        return PatchDetector(grow_bank(self.bank, rows, max_rows, self.kind), self.k, self.top)

    @classmethod
    def from_parts(cls, params: dict, arrays: dict[str, np.ndarray]) -> "PatchDetector":
        bank = array_param(arrays, "bank", 2, cls.kind)
        return cls(bank, int_param(params, "k", 1, len(bank), cls.kind),
                   int_param(params, "top", 0, MAX_TOP, cls.kind, default=1))
