"""Video files and cameras through ``cv2.VideoCapture``: the one reader behind the runtime's
video source (``streams.sources``) and training footage (``data.video``), so a training frame is
the frame ``edgessl run --source video.mp4`` scores."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .errors import EdgesslError
from .images import CAMERA_PIXELS, canonical_image, check_pixels

VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")


def is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES


class VideoReader:
    """One opened video file or camera (``target``: a path, a device index or a URL); ``frames``
    yields ``(index, RGB image or None, error or None)``, BGR converted to RGB. A stream whose
    frame size (from its header, before any frame is decoded) is over ``max_pixels`` is refused."""

    def __init__(self, name: str, target: str | int, live: bool, max_pixels: int = CAMERA_PIXELS):
        self.name, self.live = name, live
        self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            what = "camera" if live else "video file"
            raise EdgesslError(f"{what} {name} did not open (check the device/path, permissions and codecs)")
        try:
            check_pixels(int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                         max_pixels, name)
        except EdgesslError:
            self.cap.release()
            raise
        self.expected = 0 if live else int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.fps = float(self.cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.read = 0  # frames the capture delivered so far

    def frames(self) -> Iterator[tuple[int, np.ndarray | None, str | None]]:
        while True:
            ok, img = self.cap.read()
            if not ok or img is None:
                return
            i, self.read = self.read, self.read + 1
            try:
                yield i, canonical_image(img, bgr=True, name=self.name), None
            except EdgesslError as exc:
                yield i, None, str(exc)

    def end_note(self) -> str | None:
        """Why the frames ended, when it is worth saying: a camera that stopped, a short or empty video."""
        if self.live:
            return f"camera {self.name} stopped delivering frames after {self.read}"
        if self.read < self.expected:
            return f"video {self.name} ended early: {self.read} of {self.expected} frames could be read"
        if self.read == 0:
            return f"video {self.name} gave no frames (truncated file or unsupported codec?)"
        return None

    def close(self) -> None:
        self.cap.release()
