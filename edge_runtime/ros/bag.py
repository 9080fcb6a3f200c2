"""Score the images of a recorded ROS 2 bag (MCAP or sqlite3) with a pipeline, without a ROS install.

``rosbags`` (pure Python) reads the bag and deserialises ``sensor_msgs/Image`` and
``sensor_msgs/CompressedImage``; ``ros_image`` turns them into pixels exactly as the ROS node does,
so a replay scores like the live node. Every message gives one JSONL record (``sinks.record``) plus
``topic``, ``stamp_ns`` (the header stamp) and ``log_time_ns`` (the bag's receive time); a message
that cannot be decoded gives an error record and the replay goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import EdgesslError
from ..pipeline import Pipeline
from .image import image_from_compressed, image_from_raw
from ..streams.sinks import JsonlSink, Summary, record
from ..streams.sources import Frame

IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


@dataclass
class BagImage:
    """One image message of a bag: where and when it was, and its pixels or why there are none."""

    frame: Frame
    topic: str
    stamp_ns: int
    log_time_ns: int


def _pixels(msg, msgtype: str) -> np.ndarray:
    if msgtype.endswith("CompressedImage"):
        return image_from_compressed(msg.format, msg.data)
    return image_from_raw(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)


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


def bag_images(bag: str | Path, topics: Sequence[str] = ()) -> Iterator[BagImage]:
    """Every image message of ``topics`` (all image topics when empty), in log-time order. A bag
    that stops being readable part way (a corrupt or truncated chunk) ends with one error item."""
    bag = Path(bag)
    if not bag.exists():
        raise EdgesslError(f"{bag}: no such bag (give the bag directory or its .mcap/.db3 file's folder)")
    reader = _reader(bag)
    index = 0
    try:
        connections = _image_connections(reader, bag, topics)
        messages = reader.messages(connections=connections)
        while True:
            try:
                conn, log_time, raw = next(messages)
            except StopIteration:
                break
            except Exception as exc:  # rosbags/sqlite raise assorted errors on a damaged chunk
                error = f"bag unreadable after message {index}: {type(exc).__name__}: {exc}"
                yield BagImage(Frame(index, f"{bag}#{index}", None, error), "", 0, 0)
                break
            name = f"{conn.topic}#{index}"
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # rosbags raises plain exceptions for corrupt CDR
                yield BagImage(Frame(index, name, None, f"cannot deserialise message: {exc}"), conn.topic, 0, log_time)
                index += 1
                continue
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            try:
                frame = Frame(index, name, _pixels(msg, conn.msgtype))
            except EdgesslError as exc:
                frame = Frame(index, name, None, str(exc))
            yield BagImage(frame, conn.topic, stamp, log_time)
            index += 1
    finally:
        reader.close()


def replay_bag(pipe: Pipeline, bag: str | Path, topics: Sequence[str], sink: JsonlSink,
               with_features: bool = False) -> Summary:
    """Score every image of the bag; one record per message in ``sink``; return the summary."""
    summary = Summary(str(bag))
    for item in bag_images(bag, topics):
        result, error = None, item.frame.error
        if error is None:
            try:
                result = pipe.score(item.frame.image, with_features=with_features)
            except EdgesslError as exc:
                error = str(exc)
        summary.add(result, error)
        rec = record(str(bag), item.frame, result, error)
        rec.update(topic=item.topic, stamp_ns=item.stamp_ns, log_time_ns=item.log_time_ns)
        if with_features and result is not None:
            rec["features"] = [round(float(v), 6) for v in result.features]
        sink.write(rec)
    return summary
