"""Anomaly-detector scoring in numpy: the code evaluation and the device both run.

``load_detector(directory)`` reads ``detector.json`` + ``detector.npz`` (see ``base``) and returns
the detector of the recorded ``kind``; ``DETECTORS`` maps each kind to its class.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgesslError
from .base import Detector, DetectorOutput, read_parts
from .combined import CombinedDetector
from .gaussian import GaussianDetector
from .knn import KnnDetector
from .patch import PatchDetector

DETECTORS: dict[str, type[Detector]] = {d.kind: d for d in (GaussianDetector, KnnDetector, PatchDetector,
                                                             CombinedDetector)}


def load_detector(directory: str | Path) -> Detector:
    """The detector saved in ``directory``, of whichever kind it records."""
    config, arrays = read_parts(directory)
    kind = config.get("kind")
    if kind not in DETECTORS:
        raise EdgesslError(f"{directory}: unknown detector kind {kind!r} (this edgessl knows {', '.join(DETECTORS)})")
    return DETECTORS[kind].from_parts(config.get("params", {}), arrays)


__all__ = ["DETECTORS", "CombinedDetector", "Detector", "DetectorOutput", "GaussianDetector", "KnnDetector", "PatchDetector",
           "load_detector"]
