"""Image sources for ``edgessl run``: files, folders, globs, datasets, video files and cameras.

``open_source(text)`` understands:

* an image file, a folder (every image file below it, sorted), or a glob (``"imgs/*.png"``);
* a MedMNIST ``.npz`` or an MVTec-AD folder (one split, ``test`` by default; labels kept);
* a video file (``.mp4``, ``.avi``, ...), read frame by frame;
* a camera: ``camera:N``, a bare device index ``N``, ``/dev/videoN``, or an ``rtsp://``/``http://`` URL.

Iterating a source yields ``Frame`` records. A file that cannot be decoded yields a frame with an
``error`` instead of stopping the iteration. Cameras and URLs are *live* (``source.live``): their
consumer may drop frames; files and videos are read in full. Problems that are not about a single
frame (a video that ends before its announced length) are collected in ``source.notes``.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from ..data.datasets import detect_kind, open_dataset
from ..errors import EdgesslError
from ..images import CAMERA_PIXELS, IMAGE_SUFFIXES, files_in, read_image
from ..video import VIDEO_SUFFIXES, VideoReader

LIVE_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")


@dataclass
class Frame:
    """One input: its position, a name for reports, the image or why there is none, a label if known,
    and ``meta``: what else the source hands its consumer (a bag message's topic and stamps, which
    ``sinks.record`` adds to the JSONL record; a triage study)."""

    index: int
    name: str
    image: np.ndarray | None
    error: str | None = None
    label: int | None = None
    meta: dict = field(default_factory=dict)


class Source:
    """Base class: ``name``, ``live``, ``notes``; iterate for frames; ``close`` releases devices."""

    live = False

    def __init__(self, name: str):
        self.name = name
        self.notes: list[str] = []

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def __len__(self) -> int:  # best known count, 0 when unknown
        return 0

    def close(self) -> None:
        pass


class FileSource(Source):
    """Image files read one by one; a file that fails to decode (or is over ``max_pixels``) becomes
    an error frame."""

    def __init__(self, name: str, paths: list[Path], max_pixels: int = CAMERA_PIXELS):
        super().__init__(name)
        self.paths, self.max_pixels = paths, max_pixels

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            try:
                yield Frame(i, str(path), read_image(path, self.max_pixels))
            except EdgesslError as exc:
                yield Frame(i, str(path), None, str(exc))


class DatasetSource(Source):
    """One split of a labelled dataset (MedMNIST ``.npz``, MVTec-AD)."""

    def __init__(self, name: str, ds):
        super().__init__(name)
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __iter__(self) -> Iterator[Frame]:
        for i in range(len(self.ds)):
            label = int(self.ds.labels[i])
            try:
                yield Frame(i, self.ds.name(i), self.ds.image(i), label=label)
            except EdgesslError as exc:
                yield Frame(i, self.ds.name(i), None, str(exc), label=label)


class VideoSource(Source):
    """Frames of a video file or a camera (``video.VideoReader``)."""

    def __init__(self, name: str, target: str | int, live: bool, max_pixels: int = CAMERA_PIXELS):
        super().__init__(name)
        self.live = live
        self.reader = VideoReader(name, target, live, max_pixels)

    def __len__(self) -> int:
        return self.reader.expected

    def __iter__(self) -> Iterator[Frame]:
        for i, image, error in self.reader.frames():
            yield Frame(i, f"{self.name}#{i}", image, error)
        self.notes += [note] if (note := self.reader.end_note()) else []
        self.close()

    def close(self) -> None:
        self.reader.close()


def _camera_target(text: str) -> int | str | None:
    if text.startswith("camera:") and text[7:].isdigit():
        return int(text[7:])
    if text.isdigit():
        return int(text)
    if text.startswith("/dev/video"):
        return text
    if text.startswith(LIVE_PREFIXES):
        return text
    return None


def source_paths(text: str) -> list[Path]:
    """The files and folders a source text names (none for a camera): what its outputs must not overwrite."""
    if _camera_target(text) is not None:
        return []
    if any(c in text for c in "*?["):
        return [Path(p) for p in glob.glob(text, recursive=True)]
    return [Path(text)] if Path(text).exists() else []


def open_source(text: str, split: str = "test", max_pixels: int = CAMERA_PIXELS) -> Source:
    """The source ``text`` names (see the module docstring); ``EdgesslError`` when there is none.
    Images and video frames over ``max_pixels`` are refused before decoding."""
    camera = _camera_target(text)
    if camera is not None:
        return VideoSource(text, camera, live=True, max_pixels=max_pixels)
    path = Path(text)
    if any(c in text for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not paths:
            raise EdgesslError(f"no files match {text}")
        return FileSource(text, paths, max_pixels)
    if not path.exists():
        raise EdgesslError(f"source not found: {text} (give an image, a folder, a glob, a .npz, a video, "
                           "or camera:N)")
    if not path.is_file() and not path.is_dir():
        raise EdgesslError(f"source {text} is not a regular file or folder (a device, FIFO or socket)")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            return DatasetSource(text, open_dataset(text, split))
        if suffix in VIDEO_SUFFIXES:
            return VideoSource(text, text, live=False, max_pixels=max_pixels)
        return FileSource(text, [path], max_pixels)
    if detect_kind(text) == "mvtec":
        return DatasetSource(text, open_dataset(text, split))
    paths = files_in(path)
    if not paths:
        raise EdgesslError(f"{text}: no image files in this folder (suffixes: {', '.join(IMAGE_SUFFIXES)})")
    return FileSource(text, paths, max_pixels)
