"""kNN detector: mean cosine distance of the embedding to its k nearest normal embeddings.

    raw(x) = 1/k * sum_{j in kNN(x)} (1 - cos(x, b_j)),

over a memory bank ``b`` of L2-normalised normal training embeddings (all of them, or a greedy
k-center coreset of them: ``train/detectors/knn.py``). The same distance as ``edgessl evaluate``'s
plain kNN AUROC (``neighbours.mean_cosine_distance``).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .bank_growth import grow_bank
from .base import Detector, DetectorOutput, array_param, int_param
from .neighbours import l2_normalise, nearest, squared_norms


class KnnDetector(Detector):
    kind = "knn"
    inputs = ("embedding",)

    def __init__(self, bank: np.ndarray, k: int = 5, normalised: bool = False):
        """``normalised``: ``bank`` rows are unit vectors already (as saved), kept bit for bit."""
        self.bank = np.asarray(bank, np.float32) if normalised else l2_normalise(bank)
        self.bank_sq = squared_norms(self.bank)
        self.k = int(k)

    def score(self, outputs: Mapping[str, np.ndarray]) -> DetectorOutput:
        x = self.output(outputs, "embedding", 2, self.bank.shape[1])
        sq, _ = nearest(l2_normalise(x), self.bank, self.k, self.bank_sq)
        return DetectorOutput(0.5 * sq.mean(axis=1))  # 1 - cos = |q - b|^2 / 2 on unit vectors

    def params(self) -> dict:
        return {"k": self.k, "bank_size": len(self.bank), "distance": "cosine"}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank}

    def banks(self) -> dict[str, np.ndarray]:
        return {self.kind: self.bank}

    def grown(self, outputs: Mapping[str, np.ndarray], max_rows: int) -> "KnnDetector":
        rows = l2_normalise(self.output(outputs, "embedding", 2, self.bank.shape[1]))
        return KnnDetector(grow_bank(self.bank, rows, max_rows, self.kind), self.k, normalised=True)

    @classmethod
    def from_parts(cls, params: dict, arrays: dict[str, np.ndarray]) -> "KnnDetector":
        bank = array_param(arrays, "bank", 2, cls.kind)
        return cls(bank, int_param(params, "k", 1, len(bank), cls.kind), normalised=True)
