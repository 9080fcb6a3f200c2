"""ROS messages <-> runtime data: images in, results and health out. No node, no logic of its own.

Pixel layout is done by ``edge_runtime.ros.image``; health values by ``edge_runtime.streams.health``.
"""

from __future__ import annotations

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float32, Float32MultiArray, Header, MultiArrayDimension

from edgessl.edge_runtime.pipeline import Result
from edgessl.edge_runtime.ros.image import FLOAT_ENCODING, image_from_message, raw_from_image
from edgessl.edge_runtime.streams.health import HealthReport


def image_from_msg(msg: Image | CompressedImage, max_pixels: int) -> np.ndarray:
    """The pixels of an Image or CompressedImage (``EdgesslError`` when malformed or over ``max_pixels``)."""
    return image_from_message(msg, isinstance(msg, CompressedImage), max_pixels)


def stamp_seconds(msg: Image | CompressedImage) -> float:
    """The header stamp in seconds (0.0 when the camera left it unset)."""
    return msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9


def image_msg(img: np.ndarray, encoding: str, header: Header) -> Image:
    """An Image of ``img`` laid out as ``encoding`` (``32FC1`` for float maps), with ``header``."""
    raw = raw_from_image(img, encoding)
    return Image(header=header, height=raw.height, width=raw.width, encoding=raw.encoding,
                 is_bigendian=raw.is_bigendian, step=raw.step, data=raw.data)


def score_msg(result: Result) -> Float32:
    return Float32(data=result.score)


def decision_msg(result: Result) -> Bool:
    return Bool(data=result.is_anomaly)


def score_stamped_msg(result: Result, header: Header, label: str) -> DiagnosticArray:
    """Score and decision with the input header: level WARN for an anomaly, OK otherwise; the status is
    named ``"{label}: anomaly score"``."""
    values = {"score": f"{result.score:.6g}", "raw_score": f"{result.raw_score:.6g}",
              "threshold": f"{result.threshold:.6g}", "is_anomaly": str(result.is_anomaly).lower(),
              "processing_ms": f"{result.latency_ms['total']:.2f}"}
    status = DiagnosticStatus(level=DiagnosticStatus.WARN if result.is_anomaly else DiagnosticStatus.OK,
                              name=f"{label}: anomaly score", message="anomaly" if result.is_anomaly else "normal",
                              hardware_id=result.bundle_hash[:12], values=_key_values(values))
    return DiagnosticArray(header=header, status=[status])


def prediction_msg(result: Result, header: Header, label: str, positive_class: str | None) -> DiagnosticArray:
    """The classifier head's prediction with the input header: one status named ``"{label}: class"``,
    message the predicted class, level WARN when it is ``positive_class`` (the bundle's abnormal class;
    None: always OK), values ``class``, its ``probability``, ``p(<class>)`` of every class in the
    head's order, and ``processing_ms``."""
    probs = result.probabilities
    values = {"class": result.class_name, "probability": f"{probs[result.class_name]:.6g}",
              **{f"p({c})": f"{p:.6g}" for c, p in probs.items()},
              "processing_ms": f"{result.latency_ms['total']:.2f}"}
    level = DiagnosticStatus.WARN if result.class_name == positive_class else DiagnosticStatus.OK
    status = DiagnosticStatus(level=level, name=f"{label}: class", message=result.class_name,
                              hardware_id=result.bundle_hash[:12], values=_key_values(values))
    return DiagnosticArray(header=header, status=[status])


def features_msg(features: np.ndarray) -> Float32MultiArray:
    vec = np.asarray(features, np.float32).reshape(-1)
    msg = Float32MultiArray()
    msg.layout.dim = [MultiArrayDimension(label="feature", size=vec.size, stride=vec.size)]
    msg.data = vec.tolist()
    return msg


def features_stamped_msg(features: np.ndarray, header: Header) -> Image:
    """The embedding as a 1 x D ``32FC1`` image carrying the input header."""
    return image_msg(np.asarray(features, np.float32).reshape(1, -1), FLOAT_ENCODING, header)


def heatmap_msg(anomaly_map: np.ndarray, header: Header) -> Image:
    """The normalised anomaly map (1.0 = threshold), ``32FC1`` at the input image's size."""
    return image_msg(np.asarray(anomaly_map, np.float32), FLOAT_ENCODING, header)


def diagnostics_msg(reports: dict[str, HealthReport], stamp) -> DiagnosticArray:
    """Node health, one status per entry of ``reports`` (status name -> report): several nodes and
    several cameras of one node stay apart on /diagnostics."""
    statuses = [DiagnosticStatus(level=bytes([int(r.level)]), name=name, message=r.message,
                                 hardware_id=r.values.get("bundle hash", "")[:12], values=_key_values(r.values))
                for name, r in reports.items()]
    msg = DiagnosticArray(status=statuses)
    msg.header.stamp = stamp
    return msg


def _key_values(values: dict[str, str]) -> list[KeyValue]:
    return [KeyValue(key=k, value=v) for k, v in values.items()]
