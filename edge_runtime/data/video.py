"""Video files as footage, decoded by the runtime's own ``video.VideoReader`` (OpenCV), so a
training frame is the frame ``edgessl run --source video.mp4`` scores."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..errors import EdgesslError
from ..video import VideoReader
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
            reader = VideoReader(self.name, self.name, live=False)
        except EdgesslError as exc:
            raise UnreadableFile(str(exc)) from None
        try:
            for i, image, error in reader.frames():
                yield StreamFrame(i, f"{self.name}#{i}", i / reader.fps if reader.fps > 0 else None, image, error)
        finally:
            reader.close()
        self.notes += [note] if (note := reader.end_note()) else []
