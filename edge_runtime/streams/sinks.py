"""Where ``edgessl run`` puts its results: a JSONL line per input, overlay images, a summary.

JSONL record (one per input, scored or not)::

    {"source", "index", "name", "label", "score", "raw_score", "is_anomaly", "threshold",
     "latency_ms": {"preprocess", "inference", "score", "total"}, "error"}

``error`` is null for a scored input; for an input that could not be scored, the score fields are
null and ``error`` says why. A bundle with a classifier head adds, to each scored record, ``class``
(the most probable class) and ``probabilities`` (``{class: p}``); one with no detector scores no
anomaly, so its ``score``, ``raw_score``, ``is_anomaly`` and ``threshold`` are null. A frame's ``meta`` is added (a bag message's ``topic``, ``stamp_ns``,
``log_time_ns``), and ``features`` (the embedding, 6 decimals) when they were asked for.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ..errors import EdgesslError
from ..heatmaps import overlay
from ..images import to_uint8
from ..pipeline import Result
from ..drift import DriftWatch
from ..timing import percentiles
from .sources import Frame


def record(source: str, frame: Frame, result: Result | None, error: str | None) -> dict:
    """The JSONL record of one input."""
    rec = {"source": source, "index": frame.index, "name": frame.name, "label": frame.label,
           "score": None, "raw_score": None, "is_anomaly": None, "threshold": None, "latency_ms": None,
           "error": error, **frame.meta}
    if result is not None:
        rec.update(score=result.score, raw_score=result.raw_score, is_anomaly=result.is_anomaly,
                   threshold=result.threshold, latency_ms={k: round(v, 3) for k, v in result.latency_ms.items()})
        if result.probabilities is not None:
            rec.update({"class": result.class_name,
                        "probabilities": {k: round(v, 6) for k, v in result.probabilities.items()}})
        if result.features is not None:
            rec["features"] = [round(float(v), 6) for v in result.features]
    return rec


class JsonlSink:
    """One JSON line per input to a file (``-`` or None: standard output), flushed per line, so a
    reader following the file sees each record as it is scored. A new file is created exclusively;
    an existing one is replaced only with ``replace`` (``outputs.output_file`` checked it first).
    A write that fails (a full disk) is one ``EdgesslError`` line."""

    def __init__(self, path: str | Path | None, replace: bool = False):
        self.to_stdout = path in (None, "-")
        self.path = path
        if self.to_stdout:
            self.file = sys.stdout
            return
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "w" if replace else "x")
        except OSError as exc:
            raise EdgesslError(f"cannot write {path} ({exc.strerror})") from None

    def write(self, rec: dict) -> None:
        try:
            self.file.write(json.dumps(rec) + "\n")
            self.file.flush()
        except OSError as exc:
            raise EdgesslError(f"cannot write {self.path or 'standard output'} ({exc.strerror})") from None

    def close(self) -> None:
        if not self.to_stdout:
            try:
                self.file.close()
            except OSError as exc:  # the last buffered bytes did not fit
                raise EdgesslError(f"cannot write {self.path} ({exc.strerror})") from None


def _safe_name(index: int, name: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem)[-60:]
    return f"{index:06d}_{stem}.png"


class OverlaySink:
    """An image per scored input in ``directory``: the anomaly map blended over the input (JET
    colour map: 0 = median normal, 1 = threshold, 2+ = red) when the detector gives maps, otherwise
    the input itself; the normalised score is written in the corner, red when anomalous."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgesslError(f"cannot write overlays into {directory} ({exc.strerror})") from None

    def write(self, frame: Frame, image: np.ndarray, result: Result) -> Path:
        img = to_uint8(image)
        if result.anomaly_map is not None:
            pic = overlay(img, result.anomaly_map)
        else:
            pic = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        pic = np.ascontiguousarray(pic[:, :, ::-1])  # RGB -> BGR for OpenCV
        h = pic.shape[0]
        scale = max(0.3, h / 400)
        colour = (0, 0, 255) if result.is_anomaly else (0, 200, 0)
        cv2.putText(pic, f"{result.score:.2f}", (2, max(10, int(18 * scale))), cv2.FONT_HERSHEY_SIMPLEX,
                    scale * 0.6, colour, 1, cv2.LINE_AA)
        path = self.directory / _safe_name(frame.index, frame.name)
        try:
            written = cv2.imwrite(str(path), pic)
        except cv2.error:
            written = False
        if not written:  # OpenCV says nothing on its own: a read-only or full folder would go unnoticed
            raise EdgesslError(f"cannot write the overlay {path} (is {self.directory} writable, with space left?)")
        return path


class Summary:
    """Counts and latency over a run: scored, failed, dropped, anomalies, images per class (a bundle
    with a classifier head), total-latency percentiles, and where a ``DriftWatch`` is given, its
    report on the run's raw scores."""

    def __init__(self, source: str, drift: DriftWatch | None = None):
        self.source, self.drift = source, drift
        self.scored = self.failed = self.anomalies = self.dropped = 0
        self.latencies: list[float] = []
        self.classes: dict[str, int] = {}
        self.errors: list[str] = []
        self.notes: list[str] = []
        self.start = time.perf_counter()

    def add(self, result: Result | None, error: str | None) -> None:
        if result is None:
            self.failed += 1
            if len(self.errors) < 20:
                self.errors.append(error or "unknown error")
            return
        self.scored += 1
        self.anomalies += int(bool(result.is_anomaly))
        if result.class_name is not None:
            self.classes[result.class_name] = self.classes.get(result.class_name, 0) + 1
        self.latencies.append(result.latency_ms["total"])
        if self.drift is not None:
            self.drift.add(result.raw_score)

    def to_dict(self) -> dict:
        wall = time.perf_counter() - self.start
        return {"source": self.source, "scored": self.scored, "failed": self.failed, "dropped": self.dropped,
                "anomalies": self.anomalies, "classes": self.classes, "latency_ms": percentiles(self.latencies),
                "wall_s": round(wall, 3), "images_per_s": round(self.scored / wall, 2) if wall > 0 else None,
                "errors": self.errors, "notes": self.notes,
                "drift": self.drift.report().to_dict() if self.drift is not None else None}
