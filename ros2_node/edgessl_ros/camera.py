"""A test-pattern camera: publishes ``sensor_msgs/Image`` at a fixed rate, for trying and benchmarking the node.

    python -m edgessl_ros.camera --topic image --rate 30 --width 640 --height 480 --duration 20
    python -m edgessl_ros.camera --image part.png --frames 50 --frame-id cam0 --ros-args -r __ns:=/robot

Publishes one image file (``--image``) or a moving synthetic pattern, stamped with the publish time,
on sensor-data QoS (best effort) unless ``--reliable``. It waits (``--wait-s``) for a subscriber
before the first frame, and prints one JSON line at the end: frames published, first and last stamps.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image

from edgessl.edge_runtime.images import read_image
from edgessl.edge_runtime.ros.image import RAW_ENCODINGS, raw_from_image


def pattern(i: int, height: int, width: int) -> np.ndarray:
    """Frame ``i`` of the synthetic pattern: diagonal RGB gradients drifting by 4 px per frame."""
    y, x = np.mgrid[0:height, 0:width]
    r = ((x + 4 * i) % 256).astype(np.uint8)
    g = ((y + 2 * i) % 256).astype(np.uint8)
    b = (((x + y) // 2) % 256).astype(np.uint8)
    return np.dstack([r, g, b])


def frames_for(args: argparse.Namespace) -> list[Image]:
    """The messages to cycle through (without header): the image, or 30 frames of the pattern."""
    if args.image:
        images = [read_image(args.image)]
    else:
        images = [pattern(i, args.height, args.width) for i in range(30)]
    out = []
    for img in images:
        if args.encoding.startswith("mono") and img.ndim == 3:
            img = img[:, :, 1]
        if args.encoding == "mono16" and img.dtype == np.uint8:
            img = img.astype(np.uint16) * 257
        elif args.encoding != "mono16" and img.ndim == 2 and not args.encoding.startswith("mono"):
            img = np.dstack([img] * 3)
        raw = raw_from_image(img, args.encoding)
        out.append(Image(height=raw.height, width=raw.width, encoding=raw.encoding,
                         is_bigendian=raw.is_bigendian, step=raw.step, data=raw.data))
    return out


class Camera(Node):
    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__("edgessl_camera")
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if args.reliable else qos_profile_sensor_data
        self.pub = self.create_publisher(Image, args.topic, qos)
        self.frames = frames_for(args)
        self.args = args
        self.published = 0
        self.first_stamp_ns = self.last_stamp_ns = None

    def wait_for_subscriber(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self.pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.pub.get_subscription_count() > 0

    def publish_next(self) -> None:
        msg = self.frames[self.published % len(self.frames)]
        msg.header.frame_id = self.args.frame_id
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub.publish(msg)
        self.published += 1
        self.last_stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        self.first_stamp_ns = self.first_stamp_ns or self.last_stamp_ns

    def done(self) -> bool:
        a = self.args
        return (a.frames and self.published >= a.frames) or (a.duration and self.published >= a.duration * a.rate)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="edgessl_camera", description=__doc__.split("\n")[0])
    p.add_argument("--topic", default="image")
    p.add_argument("--rate", type=float, default=30.0, help="frames per second")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--encoding", default="rgb8", choices=list(RAW_ENCODINGS))
    p.add_argument("--image", help="publish this image file instead of the pattern")
    p.add_argument("--frames", type=int, default=0, help="stop after this many frames")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds of frames")
    p.add_argument("--frame-id", default="camera")
    p.add_argument("--reliable", action="store_true", help="reliable QoS instead of sensor-data (best effort)")
    p.add_argument("--wait-s", type=float, default=10.0, help="wait this long for a subscriber before publishing")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    args = parse_args(argv[: len(argv) - len(ros_args)])
    rclpy.init(args=["edgessl_camera", *ros_args])
    cam = Camera(args)
    period, matched = 1.0 / args.rate, False
    try:
        matched = cam.wait_for_subscriber(args.wait_s)
        next_t = time.monotonic()
        while rclpy.ok() and not cam.done():
            cam.publish_next()
            next_t += period
            time.sleep(max(0.0, next_t - time.monotonic()))
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        print(json.dumps({"published": cam.published, "subscriber_matched": matched, "frame_id": args.frame_id,
                          "first_stamp_ns": cam.first_stamp_ns, "last_stamp_ns": cam.last_stamp_ns}), flush=True)
        cam.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
