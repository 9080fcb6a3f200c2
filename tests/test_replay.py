"""`edgessl replay`: a bag written with rosbags (MCAP and sqlite3) holding Image and CompressedImage
messages is scored; every record's score equals the Pipeline's on the same pixels."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from requires import require

from edgessl.cli import main
from edgessl.edge_runtime.ros.image import raw_from_image
from ros_support import sample_image

pytestmark = pytest.mark.ros
RGB = sample_image(3, 30, 40)
GREY16 = sample_image(1, 30, 40).astype(np.uint16) * 257


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from runtime_bundle import make_bundle

    return make_bundle(tmp_path_factory.mktemp("replay") / "bundle", detector="knn")


def write_bag(path, storage: str) -> list[tuple[str, int, np.ndarray | None]]:
    """The bag, and what it holds: (topic, stamp_ns, pixels or None when malformed), in order."""
    rosbags = require("rosbags", reason="rosbags (the `ros` extra) is not installed")
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    del rosbags
    ts = get_typestore(Stores.ROS2_JAZZY)
    Image, CompressedImage = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    String = ts.types["std_msgs/msg/String"]

    def header(stamp):
        return Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")

    def raw_msg(img, encoding, stamp, padding=0, bigendian=False, step=None):
        raw = raw_from_image(img, encoding, padding, bigendian)
        return Image(header=header(stamp), height=raw.height, width=raw.width, encoding=encoding,
                     is_bigendian=raw.is_bigendian, step=step or raw.step, data=np.frombuffer(raw.data, np.uint8))

    png = cv2.imencode(".png", RGB[:, :, ::-1].copy())[1].reshape(-1)
    jpeg = cv2.imencode(".jpg", RGB[:, :, ::-1].copy())[1].reshape(-1)
    plan = [
        ("/cam/image", raw_msg(RGB, "bgr8", 10**18 + 1, padding=4), RGB),
        ("/cam/image", raw_msg(GREY16, "mono16", 10**18 + 2, bigendian=True), GREY16),
        ("/cam/image", raw_msg(RGB, "rgb8", 10**18 + 3, step=7), None),  # malformed: step too small
        ("/cam/image/compressed", CompressedImage(header=header(10**18 + 4), format="png", data=png), RGB),
        ("/cam/image/compressed", CompressedImage(header=header(10**18 + 5), format="jpeg", data=jpeg),
         cv2.imdecode(jpeg, cv2.IMREAD_UNCHANGED)[:, :, ::-1]),
        ("/chatter", String(data="not an image"), None),
    ]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for i, (topic, msg, _) in enumerate(plan):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=ts)
            writer.write(conns[topic], 2 * 10**18 + i, ts.serialize_cdr(msg, msg.__msgtype__))
    return [(topic, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, pixels)
            for topic, msg, pixels in plan if topic != "/chatter"]


def replay(*args: str) -> int:
    return main(["replay", *args])


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_replay_scores_every_image_like_the_pipeline(bundle, tmp_path, storage):
    from edgessl.edge_runtime.pipeline import Pipeline

    bag = tmp_path / f"bag_{storage}"
    content = write_bag(bag, storage)
    out = tmp_path / "results.jsonl"
    assert replay("--source", str(bag), "--bundle", str(bundle), "--out", str(out)) == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(content)
    pipe = Pipeline.load(bundle)
    for rec, (topic, stamp, pixels) in zip(records, content):
        assert rec["topic"] == topic and rec["stamp_ns"] == stamp and rec["log_time_ns"] > 0
        if pixels is None:
            assert rec["score"] is None and "step 7 is smaller than" in rec["error"]
        else:
            assert rec["error"] is None and rec["score"] == pipe.score(pixels).score


def test_replay_one_topic_with_features(bundle, tmp_path, capsys):
    bag = tmp_path / "bag"
    write_bag(bag, "mcap")
    assert replay("--source", str(bag), "--bundle", str(bundle), "--topic", "/cam/image/compressed", "--features", "--json") == 0
    out = capsys.readouterr()
    records = [json.loads(line) for line in out.out.splitlines()]
    assert [r["topic"] for r in records] == ["/cam/image/compressed"] * 2 and len(records[0]["features"]) > 0
    summary = json.loads(out.err.strip().splitlines()[-1])
    assert summary["scored"] == 2 and summary["failed"] == 0


@pytest.mark.parametrize("topic, message", [("/chatter", "carries std_msgs/msg/String, not an image"),
                                            ("/nope", "no topic '/nope'; image topics here: /cam/image (3 messages), /cam/image/compressed (2 messages)")])
def test_replay_refuses_a_wrong_topic(bundle, tmp_path, capsys, topic, message):
    bag = tmp_path / "bag"
    write_bag(bag, "sqlite3")
    assert replay("--source", str(bag), "--bundle", str(bundle), "--topic", topic) == 2
    assert message in capsys.readouterr().err


def test_replay_refuses_what_is_not_a_bag(bundle, tmp_path, capsys):
    (tmp_path / "notabag").mkdir()
    assert replay("--source", str(tmp_path / "notabag"), "--bundle", str(bundle)) == 2
    assert "cannot read as a ROS bag" in capsys.readouterr().err


def test_replay_needs_neither_torch_nor_rclpy(bundle, tmp_path):
    """The device-side path: a process whose imports refuse torch and rclpy replays a bag."""
    import subprocess
    import sys
    import textwrap

    bag = tmp_path / "bag"
    content = write_bag(bag, "mcap")
    out = tmp_path / "r.jsonl"
    script = textwrap.dedent(f"""
        import importlib.abc, sys
        class Refuse(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "rclpy"):
                    raise ImportError("refused: " + name)
        sys.meta_path.insert(0, Refuse())
        from edgessl.cli import main
        sys.exit(main(["replay", "--source", {str(bag)!r}, "--bundle", {str(bundle)!r}, "--out", {str(out)!r}]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == len(content)
