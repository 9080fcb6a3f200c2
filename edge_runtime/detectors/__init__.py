"""Anomaly-detector scoring in numpy: the code evaluation and the device both run.

``load_detector(directory)`` reads ``detector.json`` + ``detector.npz`` (see ``base``) and returns
the detector of the recorded ``kind``; ``detector_from_bytes`` does the same from the files' bytes
(a bundle's, as its load verified them); ``DETECTORS`` maps each kind to its class.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgesslError
from .base import Detector, DetectorOutput, parts_from_bytes, read_parts
from .combined import CombinedDetector
from .gaussian import GaussianDetector
from .knn import KnnDetector
from .patch import PatchDetector

DETECTORS: dict[str, type[Detector]] = {d.kind: d for d in (GaussianDetector, KnnDetector, PatchDetector,
                                                             CombinedDetector)}


def load_detector(directory: str | Path) -> Detector:
    """The detector saved in ``directory``, of whichever kind it records."""
    return _build(*read_parts(directory), str(directory))


def detector_from_bytes(config: bytes, arrays: bytes, where: str) -> Detector:
    """The detector whose ``detector.json`` and ``detector.npz`` have these bytes (``where``: their folder)."""
    return _build(*parts_from_bytes(config, arrays, where), where)


def _build(config: dict, arrays: dict, where: str) -> Detector:
    kind = config.get("kind")
    if not isinstance(kind, str) or kind not in DETECTORS:
        raise EdgesslError(f"{where}: unknown detector kind {kind!r:.40} (this edgessl knows {', '.join(DETECTORS)})")
    try:
        return DETECTORS[kind].from_parts(config.get("params", {}), arrays)
    except EdgesslError as exc:
        raise EdgesslError(f"{where}: {exc}") from None


__all__ = ["DETECTORS", "CombinedDetector", "Detector", "DetectorOutput", "GaussianDetector", "KnnDetector", "PatchDetector",
           "detector_from_bytes", "load_detector"]
