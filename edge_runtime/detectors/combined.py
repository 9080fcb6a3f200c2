"""Combined detector: the mean of several detectors' scores, each standardised on its held-out normal scores.

For parts ``d_1 .. d_n`` (for example gaussian and knn on the embedding, patch on the patch
features), each with the median ``m_i`` and a scale ``s_i`` of its cross-fitted normal scores
(``train/fit.py``: scores from detectors that never saw the image; ``s_i`` their 90th percentile
minus ``m_i``, ``train/detectors/combined.py``; the scale is stored, so this file does not decide it),

    z_i(x) = (raw_i(x) - m_i) / s_i,        raw(x) = 1/n * sum_i z_i(x).

Standardising puts image-level and patch-level evidence on one scale, so neither dominates by its
units; quantiles are robust to the odd outlier among the normal images. The map of the
part with maps (the patch detector) shows where the score comes from, shifted so that its peak
is the combined score:

    map(i, j) = raw + (z_patch(i, j) - max_ij z_patch(i, j)) / n,

so ``max map = raw`` whatever the patch part's image score (with the max, ``top`` 1, this is
``1/n * (z_patch(i, j) + sum_{i != patch} z_i(x))``), and the map crosses the threshold exactly
where, and only when, the image does.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import EdgesslError
from .base import Detector, DetectorOutput, number_param
from .gaussian import GaussianDetector
from .knn import KnnDetector
from .patch import PatchDetector

PART_KINDS: dict[str, type[Detector]] = {d.kind: d for d in (GaussianDetector, KnnDetector, PatchDetector)}


class CombinedDetector(Detector):
    kind = "combined"
    inputs = ("embedding", "patches")
    has_maps = True
    blas_bound = True

    def __init__(self, parts: list[Detector], medians: list[float], scales: list[float]):
        if not parts or len(parts) != len(medians) or len(parts) != len(scales):
            raise EdgesslError("a combined detector needs one median and one scale per part")
        if sum(p.has_maps for p in parts) != 1:
            raise EdgesslError("a combined detector needs exactly one part that makes maps (patch)")
        if min(scales) <= 0 or not np.isfinite(scales).all():
            raise EdgesslError(f"combined detector scales must be positive and finite, got {scales}")
        self.parts, self.medians, self.scales = parts, [float(m) for m in medians], [float(s) for s in scales]

    def score(self, outputs: Mapping[str, np.ndarray]) -> DetectorOutput:
        z, z_map = [], None
        for part, median, scale in zip(self.parts, self.medians, self.scales):
            out = part.score(outputs)
            z.append((out.raw_scores - median) / scale)
            if part.has_maps:
                z_map = (out.maps.astype(np.float64) - median) / scale
        raw = np.mean(z, axis=0)
        maps = raw[:, None, None] + (z_map - z_map.max(axis=(1, 2), keepdims=True)) / len(self.parts)
        return DetectorOutput(raw, maps.astype(np.float32))

    def banks(self) -> dict[str, np.ndarray]:
        return {name: bank for part in self.parts for name, bank in part.banks().items()}

    def grown(self, outputs: Mapping[str, np.ndarray], max_rows: int) -> "CombinedDetector":
        """The parts with a memory bank grown, the others (gaussian) and the standardisation as they were."""
        parts = [part.grown(outputs, max_rows) if part.banks() else part for part in self.parts]
        return CombinedDetector(parts, self.medians, self.scales)

    def params(self) -> dict:
        return {"parts": [{"kind": p.kind, "params": p.params(), "median": m, "scale": s}
                          for p, m, s in zip(self.parts, self.medians, self.scales)]}

    def arrays(self) -> dict[str, np.ndarray]:
        return {f"{i}.{name}": a for i, p in enumerate(self.parts) for name, a in p.arrays().items()}

    @classmethod
    def from_parts(cls, params: dict, arrays: dict[str, np.ndarray]) -> "CombinedDetector":
        entries = params.get("parts")
        if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
            raise EdgesslError("the combined detector's parameter 'parts' must be a non-empty list of objects")
        parts, medians, scales = [], [], []
        for i, entry in enumerate(entries):
            kind = entry.get("kind")
            if not isinstance(kind, str) or kind not in PART_KINDS or not isinstance(entry.get("params", {}), dict):
                raise EdgesslError(f"combined detector part {i}: unknown kind {kind!r:.40}")
            prefix = f"{i}."
            own = {name[len(prefix):]: a for name, a in arrays.items() if name.startswith(prefix)}
            parts.append(PART_KINDS[kind].from_parts(entry.get("params", {}), own))
            medians.append(number_param(entry, "median", f"combined (part {i})"))
            scales.append(number_param(entry, "scale", f"combined (part {i})", positive=True))
        return cls(parts, medians, scales)
