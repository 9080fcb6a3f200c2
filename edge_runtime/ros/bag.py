"""Score the images of a recorded ROS 2 bag (MCAP or sqlite3) with a pipeline, without a ROS install.

``rosbags`` (pure Python) reads the bag and deserialises ``sensor_msgs/Image`` and
``sensor_msgs/CompressedImage``; ``ros.image`` turns them into pixels exactly as the ROS node does,
so a replay scores like the live node. ``BagSource`` is a ``streams.Source``: replay goes through
the one scoring loop (batching, prefetch, the same records and summary as ``edgessl run``). Every
message gives one JSONL record (``sinks.record``) plus ``topic``, ``stamp_ns`` (the header stamp)
and ``log_time_ns`` (the bag's receive time); a message that cannot be decoded gives an error
record and the replay goes on.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Iterator, Sequence


from ..errors import EdgesslError
from ..streams.sources import Frame, Source
from ..images import CAMERA_PIXELS
from .image import image_from_message

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


def _reader(bag: Path):
    try:
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.typesys import Stores, get_typestore
    except ImportError:
        raise EdgesslError("reading bags needs rosbags: pip install 'edgessl[ros]'") from None
    try:
        reader = AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY))
        reader.open()
    except (AnyReaderError, OSError) as exc:
        raise EdgesslError(f"{bag}: cannot read as a ROS bag ({exc})") from None
    except Exception as exc:  # rosbags' parsers raise assorted errors on malformed metadata
        raise EdgesslError(f"{bag}: cannot read as a ROS bag ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'malformed'})") from None
    return reader


def _counts(connections) -> dict[str, int]:
    counts: dict[str, int] = {}
    for c in connections:
        counts[c.topic] = counts.get(c.topic, 0) + c.msgcount
    return counts


def _listed(counts: dict[str, int]) -> str:
    return ", ".join(f"{t} ({n} messages)" for t, n in sorted(counts.items())) or "none"


def image_topics(bag: str | Path) -> dict[str, int]:
    """The bag's image topics and their message counts."""
    reader = _reader(Path(bag))
    try:
        return _counts(c for c in reader.connections if c.msgtype in IMAGE_TYPES)
    finally:
        reader.close()


def the_image_topic(bag: str | Path, counts: dict[str, int], topic: str) -> str:
    """``topic`` checked against the bag's image topics (``counts``), or its only one when ``topic`` is empty."""
    if topic:
        if topic not in counts:
            raise EdgesslError(f"{bag}: no image topic {topic!r}; image topics here: {_listed(counts)}")
        return topic
    if len(counts) != 1:
        raise EdgesslError(f"{bag}: {len(counts)} image topics, choose one with --topic: {_listed(counts)}")
    return next(iter(counts))


def _image_connections(reader, bag: Path, topics: Sequence[str]) -> list:
    images = [c for c in reader.connections if c.msgtype in IMAGE_TYPES]
    available = _listed(_counts(images))
    if not topics:
        if not images:
            raise EdgesslError(f"{bag}: no sensor_msgs/Image or CompressedImage topic in this bag")
        return images
    types = {c.topic: c.msgtype for c in reader.connections}
    for topic in topics:
        if topic not in types:
            raise EdgesslError(f"{bag}: no topic {topic!r}; image topics here: {available}")
        if types[topic] not in IMAGE_TYPES:
            raise EdgesslError(f"{bag}: topic {topic!r} carries {types[topic]}, not an image")
    return [c for c in images if c.topic in topics]


class BagSource(Source):
    """Every image message of ``topics`` (all image topics when empty) of a bag, in log-time order,
    as frames named ``TOPIC#INDEX`` whose ``meta`` holds ``topic``, ``stamp_ns`` and ``log_time_ns``.
    A bag that stops being readable part way (a corrupt or truncated chunk) ends with one error frame.

    The bag is opened (and the topics checked) when the source is made, so a wrong path or topic is
    an ``EdgesslError`` before anything is scored. An image over ``max_pixels`` is an error frame."""

    def __init__(self, bag: str | Path, topics: Sequence[str] = (), max_pixels: int = CAMERA_PIXELS):
        super().__init__(str(bag))
        self.max_pixels = max_pixels
        path = Path(bag)
        if not path.exists():
            raise EdgesslError(f"{path}: no such bag (give the bag directory or its .mcap/.db3 file's folder)")
        self.reader = _reader(path)
        try:
            self.connections = _image_connections(self.reader, path, topics)
        except EdgesslError:
            self.reader.close()
            raise

    def __len__(self) -> int:
        return sum(c.msgcount for c in self.connections)

    def __iter__(self) -> Iterator[Frame]:
        messages = self.reader.messages(connections=self.connections)
        for index in itertools.count():
            try:
                conn, log_time, raw = next(messages)
            except StopIteration:
                return
            except Exception as exc:  # rosbags/sqlite raise assorted errors on a damaged chunk: one error frame
                yield Frame(index, f"{self.name}#{index}", None,
                            f"bag unreadable after message {index}: {type(exc).__name__}: {exc}")
                return
            name, meta = f"{conn.topic}#{index}", {"topic": conn.topic, "stamp_ns": 0, "log_time_ns": log_time}
            try:
                msg = self.reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # rosbags raises plain exceptions for corrupt CDR
                yield Frame(index, name, None, f"cannot deserialise message: {exc}", meta=meta)
                continue
            meta["stamp_ns"] = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            try:
                pixels, error = image_from_message(msg, conn.msgtype.endswith("CompressedImage"),
                                                   self.max_pixels), None
            except EdgesslError as exc:
                pixels, error = None, str(exc)
            yield Frame(index, name, pixels, error, meta=meta)

    def close(self) -> None:
        self.reader.close()
