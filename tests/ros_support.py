"""Helpers for the ROS tests: the project's loopback Fast DDS profile, a fresh domain id per test,
spinning until a condition holds, and image messages from numpy.

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
