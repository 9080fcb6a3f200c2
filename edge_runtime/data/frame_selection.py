"""Which frames of footage to keep: a stride, a rate, a cap, and near-duplicate skipping.

In stream order, a frame is skipped when (first matching rule wins):

* ``every``: its position in the stream is not a multiple of ``every``;
* ``fps``: a frame was already kept in its time slot ``floor(t * fps)`` (``t`` in seconds: the
  header stamp for bags, ``position / frame rate`` for video);
* ``error``: it could not be decoded (listed in the report with the reason);
* ``duplicate``: the mean absolute difference between its 32x32 grey thumbnail (OpenCV area
  filter) and the last kept frame's is below ``dedup`` grey levels (of 255). The default, 1.0, is
  well above what sensor noise leaves after that averaging (about 0.2 on a still camera) and well
  below what motion leaves; 0 keeps every frame.

Reading stops once ``max_frames`` frames are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol

import cv2
import numpy as np

from ..errors import EdgesslError
from ..images import to_uint8
from .source_report import SourceReport
from .source_text import SourceOptions

THUMBNAIL = 32
SELECTION_OPTIONS = {"every": "--every", "fps": "--fps", "duplicate": "--dedup", "modality": "--dicom-modality"}


@dataclass
class StreamFrame:
    """One frame of footage: where it is in the stream, when, and its pixels or why there are none."""

    position: int
    name: str
    time_s: float | None
    image: np.ndarray | None
    error: str | None = None


class FrameStream(Protocol):
    """Footage read front to back; every ``frames()`` call starts again at the beginning."""

    name: str
    notes: list[str]

    def files(self) -> list[Path]: ...

    def frames(self) -> Iterator[StreamFrame]: ...


def thumbnail(img: np.ndarray) -> np.ndarray:
    """32x32 grey float32 of an image (grey or RGB, any depth)."""
    grey = to_uint8(img)
    if grey.ndim == 3:
        grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
    return cv2.resize(grey, (THUMBNAIL, THUMBNAIL), interpolation=cv2.INTER_AREA).astype(np.float32)


def select_frames(stream: FrameStream, options: SourceOptions) -> tuple[list[int], list[str], SourceReport]:
    """Positions and names of the kept frames, and the report (read, kept, skipped by rule)."""
    report = SourceReport(stream.name)
    positions: list[int] = []
    names: list[str] = []
    last_thumb, last_slot = None, None
    for frame in stream.frames():
        if options.max_frames and len(positions) >= options.max_frames:
            report.notes.append(f"stopped after max_frames={options.max_frames}")
            break
        report.read += 1
        if frame.position % options.every:
            report.skip("every")
            continue
        slot = math.floor(frame.time_s * options.fps + 1e-9) if options.fps and frame.time_s is not None else None
        if slot is not None and slot == last_slot:
            report.skip("fps")
            continue
        if frame.image is None:
            report.skip("error", f"{frame.name}: {frame.error}")
            continue
        thumb = thumbnail(frame.image)
        if options.dedup and last_thumb is not None and float(np.abs(thumb - last_thumb).mean()) < options.dedup:
            report.skip("duplicate")
            continue
        positions.append(frame.position)
        names.append(frame.name)
        last_thumb, last_slot = thumb, slot
    report.kept = len(positions)
    report.notes += stream.notes
    return positions, names, report


def selection_error(report: SourceReport, need: str) -> EdgesslError:
    """The one-line error for a selection that left too few frames, naming the rule that removed most."""
    if report.read == 0:
        return EdgesslError(f"{report.source}: no frames" + "".join(f"; {n}" for n in report.notes))
    if not report.skipped:
        return EdgesslError(f"{report.source}: only {report.kept} frame(s) ({need})")
    worst = max(report.skipped, key=report.skipped.get)
    option = SELECTION_OPTIONS.get(worst)
    what = (f"{option} removed {report.skipped[worst]} of {report.read}; relax it" if option else
            f"{report.skipped[worst]} of {report.read} were {worst} (first: "
            f"{report.problems[0] if report.problems else '?'})")
    return EdgesslError(f"{report.source}: kept {report.kept} image(s), {need}: {what}")
