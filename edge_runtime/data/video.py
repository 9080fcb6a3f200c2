"""Video files as footage, decoded by the runtime's own ``streams.sources.VideoSource`` (OpenCV),
so a training frame is the frame ``edgessl run --source video.mp4`` scores."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2

from ..errors import EdgesslError
from ..streams.sources import VIDEO_SUFFIXES, VideoSource
from .frame_selection import StreamFrame
from .registry import UnreadableFile


class VideoStream:
    """One video file; frame times are ``position / frame rate`` (none when the rate is unknown)."""

    def __init__(self, path: Path):
        self.path = path
        self.name = str(path)
        self.notes: list[str] = []

    def files(self) -> list[Path]:
        return [self.path]

    def frames(self) -> Iterator[StreamFrame]:
        try:
            source = VideoSource(self.name, self.name, live=False)
        except EdgesslError as exc:
            raise UnreadableFile(str(exc)) from None
        fps = source.cap.get(cv2.CAP_PROP_FPS) or 0.0
        try:
            for f in source:
                yield StreamFrame(f.index, f.name, f.index / fps if fps > 0 else None, f.image, f.error)
        finally:
            source.close()
        self.notes[:] = source.notes


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES
