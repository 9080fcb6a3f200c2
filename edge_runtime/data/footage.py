"""Footage (a video, a bag topic) as a dataset: the frames ``frame_selection`` keeps, read in order.

The selection pass decodes the stream once and its result (positions, names, report) is cached
on disk (``cache.cached_json``, keyed by the files' identity and the options), so later opens
cost nothing. ``image(i)`` reads forward from where the last read stopped and starts the stream
again only when asked for an earlier frame: reading a split in index order is one pass.
"""

from __future__ import annotations

import weakref
from dataclasses import asdict
from typing import Iterator

import numpy as np

from ..errors import EdgesslError
from .cache import cached_json, digest, file_identity
from .image_datasets import UNLABELLED, ImageDataset
from .frame_selection import FrameStream, StreamFrame, select_frames
from .source_report import SourceReport
from .source_text import SourceOptions

SELECTION_FIELDS = ("topic", "every", "fps", "max_frames", "dedup")


class FootageDataset(ImageDataset):
    """The kept frames of one stream; unlabelled."""

    def __init__(self, stream: FrameStream, positions: list[int], names: list[str], report: SourceReport,
                 identity: str):
        super().__init__(stream.name, "all", np.full(len(positions), UNLABELLED), [])
        self.stream, self.positions, self.names, self.report = stream, positions, names, report
        self._identity = identity
        self._open: list[Iterator[StreamFrame]] = []  # the reader in use (at most one)
        self._next = 0  # stream position it reads next
        weakref.finalize(self, _close_all, self._open)  # at exit too, while the reader's modules still exist

    def identity(self) -> str:
        return self._identity

    def name(self, i: int) -> str:
        return self.names[i]

    def image(self, i: int) -> np.ndarray:
        want = self.positions[i]
        if not self._open or want < self._next:
            _close_all(self._open)
            self._open.append(self.stream.frames())
            self._next = 0
        for frame in self._open[0]:
            self._next = frame.position + 1
            if frame.position == want:
                if want == self.positions[-1]:
                    _close_all(self._open)  # read to the end: release the reader now, not at garbage collection
                if frame.image is None:
                    raise EdgesslError(f"{frame.name}: {frame.error} (it decoded when the source was opened)")
                return frame.image
        _close_all(self._open)
        raise EdgesslError(f"{self.source}: frame {want} is gone (the source changed while open?)")




def _close_all(readers: list) -> None:
    while readers:
        readers.pop().close()


def open_footage(stream: FrameStream, options: SourceOptions) -> FootageDataset:
    """The stream's frames that ``options`` keep (selection cached on disk)."""
    chosen = {k: v for k, v in asdict(options).items() if k in SELECTION_FIELDS}
    key = {"stream": stream.name, "files": file_identity(stream.files()), "options": chosen}

    def build() -> dict:
        positions, names, report = select_frames(stream, options)
        return {"positions": positions, "names": names, "report": report.to_dict()}

    found = cached_json("select", key, build)
    report = SourceReport(**found["report"])
    return FootageDataset(stream, found["positions"], found["names"], report, digest(key))
