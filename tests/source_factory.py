"""Real footage and lists for the data-source tests: frames are scikit-learn's digits (real images,
shipped with the package) enlarged to 32x32 and tinted, written as ROS 2 bags (rosbags), videos
(OpenCV) and PNG files with a ``path,label`` list."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

TOPICS = ("/cam/image", "/cam/image/compressed")


def digit_frames(n: int, size: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` RGB uint8 frames (``n x size x size x 3``) of real digits, and their digit labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    order = np.random.RandomState(seed).permutation(len(d.images))[:n]
    grey = np.clip(d.images[order] * (255.0 / 16.0), 0, 255).astype(np.uint8)
    big = np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR) for g in grey])
    tint = np.array([1.0, 0.8, 0.6], np.float32)
    return (big[..., None] * tint).astype(np.uint8), d.target[order]


def write_bag(path: Path, frames: np.ndarray, storage: str = "mcap", bad_encoding_at: int | None = None,
              topics: tuple[str, ...] = TOPICS) -> Path:
    """A bag with each frame on every topic in ``topics``: raw ``bgr8`` Image on the first,
    PNG CompressedImage on the second; stamps 100 ms apart. ``bad_encoding_at``: that Image
    message says ``yuv422`` (an encoding edgessl does not read)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from edgessl.edge_runtime.ros.image import raw_from_image

    ts = get_typestore(Stores.ROS2_JAZZY)
    Image, CompressedImage = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    Header, Time = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for i, img in enumerate(frames):
            stamp = 10**18 + i * 100_000_000
            header = Header(stamp=Time(sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam")
            for topic in topics:
                if topic.endswith("compressed"):
                    png = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))[1].reshape(-1)
                    msg = CompressedImage(header=header, format="png", data=png)
                else:
                    raw = raw_from_image(img, "bgr8", row_padding=2)
                    encoding = "yuv422" if i == bad_encoding_at else raw.encoding
                    msg = Image(header=header, height=raw.height, width=raw.width, encoding=encoding,
                                is_bigendian=raw.is_bigendian, step=raw.step, data=np.frombuffer(raw.data, np.uint8))
                if topic not in conns:
                    conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=ts)
                writer.write(conns[topic], stamp, ts.serialize_cdr(msg, msg.__msgtype__))
    return path


def write_video(path: Path, frames: np.ndarray, fps: float = 10.0, repeat: int = 1) -> Path:
    """An MJPG ``.avi`` of the RGB frames, each written ``repeat`` times in a row."""
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    for img in frames:
        for _ in range(repeat):
            writer.write(np.ascontiguousarray(img[:, :, ::-1]))
    writer.release()
    return path


def write_labelled_pngs(folder: Path, frames: np.ndarray, labels: list[str]) -> list[str]:
    """One PNG per frame in ``folder/img/``; returns ``rel_path,label`` rows (relative to ``folder``)."""
    (folder / "img").mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, label) in enumerate(zip(frames, labels)):
        cv2.imwrite(str(folder / "img" / f"{i:03d}.png"), np.ascontiguousarray(img[:, :, ::-1]))
        rows.append(f"img/{i:03d}.png,{label}")
    return rows
