"""Helpers for the ROS tests: the project's loopback Fast DDS profile, a fresh domain id per test,
spinning until a condition holds, image messages from numpy, and the in-process fixtures (``ros``:
a fresh context and executor; ``patch_bundle``; ``start_node``; ``Probe``, a camera and listener node).

Every DDS participant a test makes uses ``ros2_node/config/fastdds_loopback.xml`` (127.0.0.1 only,
no multicast, 16 MB shared memory) and a domain id no other test of this session uses.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from requires import require

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "ros2_node" / "config" / "fastdds_loopback.xml"
_next_domain = itertools.count()


def fresh_domain_id() -> int:
    """A non-default ROS_DOMAIN_ID (1..100) unique within this session, spread by process id."""
    return 1 + (os.getpid() * 7 + next(_next_domain)) % 100


def ros_env(domain_id: int) -> dict[str, str]:
    """Environment for a ROS process of a test: loopback profile, its domain, unbuffered output."""
    from edgessl_ros.names import fastdds_profile_env

    return {**os.environ, **fastdds_profile_env(str(PROFILE)), "ROS_DOMAIN_ID": str(domain_id),
            "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def python() -> str:
    return sys.executable


def spin_until(executor, condition, timeout_s: float = 10.0, step=None) -> bool:
    """Spin ``executor`` until ``condition()`` is true (call ``step()`` each turn); False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        if step is not None:
            step()
        executor.spin_once(timeout_sec=0.05)
    return condition()


def image_msg(img: np.ndarray, encoding: str, frame_id: str, stamp_ns: int, row_padding: int = 0,
              bigendian: bool = False):
    """A ``sensor_msgs/Image`` of ``img`` laid out as ``encoding``."""
    from sensor_msgs.msg import Image

    from edgessl.edge_runtime.ros.image import raw_from_image

    raw = raw_from_image(img, encoding, row_padding, bigendian)
    msg = Image(height=raw.height, width=raw.width, encoding=raw.encoding, is_bigendian=raw.is_bigendian,
                step=raw.step, data=raw.data)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    return msg


def sample_image(channels: int = 3, height: int = 24, width: int = 20) -> np.ndarray:
    """A real picture (a scikit-learn digit, upscaled) as uint8 grey or RGB (tinted per channel)."""
    import cv2
    from sklearn.datasets import load_digits

    digit = (load_digits().images[0] * (255 / 16)).astype(np.uint8)
    grey = cv2.resize(digit, (width, height), interpolation=cv2.INTER_LINEAR)
    if channels == 1:
        return grey
    return np.ascontiguousarray(np.dstack([grey, 255 - grey, grey // 2]))


@pytest.fixture(scope="module")
def patch_bundle(tmp_path_factory):
    """A fast torch-free bundle whose detector gives anomaly maps (for the heatmap)."""
    from runtime_bundle import make_bundle

    return make_bundle(tmp_path_factory.mktemp("ros_node") / "bundle", detector="patch")


@pytest.fixture
def ros(monkeypatch):
    """A fresh rclpy context on a fresh domain over the loopback profile; torn down after the test."""
    rclpy = require("rclpy", reason="rclpy (ros-rclpy wheels, the `ros` extra) is not importable")
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    domain = fresh_domain_id()
    for key, value in ros_env(domain).items():
        monkeypatch.setenv(key, value)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    executor = SingleThreadedExecutor(context=ctx)
    nodes = []
    try:
        yield ctx, executor, nodes
    finally:
        for node in nodes:
            (node.close if hasattr(node, "close") else node.destroy_node)()
        executor.shutdown()
        rclpy.try_shutdown(context=ctx)


def start_node(ros, bundle, node_class=None, **params):
    """An edgessl node (``EdgesslNode`` unless ``node_class``) with ``params``, spun by the ``ros`` executor."""
    from rclpy.parameter import Parameter

    from edgessl_ros.node import EdgesslNode

    ctx, executor, nodes = ros
    overrides = [Parameter(k, value=list(v) if isinstance(v, tuple) else v)
                 for k, v in {"bundle": str(bundle), **params}.items()]
    node = (node_class or EdgesslNode)(context=ctx, parameter_overrides=overrides)
    nodes.append(node)
    executor.add_node(node)
    return node


class Probe:
    """A test node: publishes camera frames on ``cameras``, records every output of the edgessl node
    under each of ``prefixes`` (``""``: the node's namespace; ``"/cam0/"``: a camera's) in ``got``."""

    def __init__(self, ros, compressed: bool = False, reliable: bool = False, cameras=("image",), prefixes=("",)):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        from edgessl_ros import names
        from edgessl_ros.node import OUTPUT_TYPES

        ctx, executor, nodes = ros
        self.executor = executor
        self.node = rclpy.create_node("probe", context=ctx)
        nodes.append(self.node)
        executor.add_node(self.node)
        qos = 10 if reliable else qos_profile_sensor_data
        self.pubs = {c: self.node.create_publisher(CompressedImage if compressed else Image, c, qos) for c in cameras}
        self.pub = self.pubs[cameras[0]]
        self.got: dict[str, list] = {}
        topics = {f"{prefix}{t}": msg_type for prefix in prefixes for t, msg_type in OUTPUT_TYPES.items()}
        topics[names.DIAGNOSTICS] = DiagnosticArray
        for topic, msg_type in topics.items():
            self.node.create_subscription(msg_type, topic, lambda m, t=topic: self.got.setdefault(t, []).append(m), 10)

    def latest_diagnostics(self, name: str | None = None) -> dict:
        """The values of the newest /diagnostics status (the one called ``name``, if given); {} before any."""
        arrays = self.got.get("/diagnostics", [])
        statuses = [s for s in arrays[-1].status if name is None or s.name == name] if arrays else []
        if not statuses:
            return {}
        status = statuses[0]
        return {"level": status.level[0], "message": status.message, **{kv.key: kv.value for kv in status.values}}

    def call(self, client, request, timeout_s: float = 10.0):
        """Call a service of the node under test (spinning both) and return its response."""
        assert client.wait_for_service(timeout_sec=timeout_s), f"no service {client.srv_name}"
        future = client.call_async(request)
        assert spin_until(self.executor, future.done, timeout_s), f"{client.srv_name} did not answer"
        return future.result()
