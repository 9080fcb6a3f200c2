"""ROS 2 bags as training footage: one image topic of a bag (MCAP or sqlite3, a bag directory or
its ``.mcap`` file), decoded by ``bag.BagSource`` exactly as ``replay`` and the node decode it.

``BAG`` is the ``ROS 2 bag`` kind of ``data.registry``'s table. The topic is
``--topic``, or the bag's only image topic; frame times for ``--fps`` are the header stamps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

from ..data.footage import open_footage
from ..data.frame_selection import StreamFrame
from ..data.registry import SourceKind, UnreadableFile
from ..data.source_text import SourceOptions
from ..data.user_data import open_each
from ..errors import EdgesslError
from .bag import BagSource, image_topics, the_image_topic


class BagStream:
    """The image messages of one topic of one bag, in log-time order."""

    def __init__(self, bag: Path, topic: str):
        self.bag, self.topic = bag, topic
        self.name = f"{bag}:{topic}"
        self.notes: list[str] = []

    def files(self) -> list[Path]:
        return [self.bag]

    def frames(self) -> Iterator[StreamFrame]:
        source = BagSource(self.bag, [self.topic])
        try:
            for f in source:
                stamp = f.meta.get("stamp_ns") or f.meta.get("log_time_ns")
                yield StreamFrame(f.index, f.name, stamp * 1e-9 if stamp else None, f.image, f.error)
        finally:
            source.close()


def is_bag(path: Path) -> bool:
    """A bag directory (``metadata.yaml``) or an ``.mcap`` file outside one."""
    if path.is_dir():
        return (path / "metadata.yaml").is_file()
    return path.is_file() and path.suffix.lower() == ".mcap" and not (path.parent / "metadata.yaml").is_file()


def _open_bag(bag: Path, options: SourceOptions):
    try:
        counts = image_topics(bag)
    except EdgesslError as exc:  # unreadable (cut off, not a bag): skipped, the other bags are read
        raise UnreadableFile(str(exc)) from None
    return open_footage(BagStream(bag, the_image_topic(bag, counts, options.topic)), options)


def open_bags(paths: list[Path], labels: list[int], class_names: list[str], options: SourceOptions):
    return open_each(paths, labels, class_names, lambda p: _open_bag(p, options))


BAG = SourceKind("ROS 2 bag", is_bag, open_bags)
