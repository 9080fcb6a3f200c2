"""The edgessl ROS 2 node: camera images in, anomaly score, decision, features, heatmap and health out.

A thin adapter over ``edgessl.edge_runtime``: the subscription callback only stores the newest
message in a one-frame drop-oldest queue; a worker thread converts it, scores it with the
``Pipeline`` and publishes, so a slow model never builds a backlog (drops are counted). A frame that
cannot be used is counted, reported on /diagnostics, and the node goes on.

    python -m edgessl_ros.node --ros-args -p bundle:=BUNDLE -p input_topic:=/camera/image_raw
    ros2 run edgessl_ros edgessl_node --ros-args --params-file config/params.yaml
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import fields

import rclpy
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rcl_interfaces.msg import ParameterDescriptor
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float32, Float32MultiArray

from edgessl.edge_runtime.backends.ort import OrtOptions
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.pipeline import Pipeline
from edgessl.edge_runtime.streams.prefetch import DropOldestQueue
from edgessl.edge_runtime.streams.rate_limit import RateLimiter
from edgessl.edge_runtime.streams.health import StreamStats

from . import messages, names
from .names import NodeParams

OUTPUT_QOS = 10  # reliable, keep last 10: reaches both reliable and best-effort subscribers


class EdgesslNode(Node):
    """Declares its parameters, loads the bundle (``EdgesslError`` when it fails its checks), subscribes."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(names.NODE, **node_kwargs)
        self.params = self._declare_params()
        problems = self.params.problems()
        if problems:
            raise EdgesslError("; ".join(problems))
        p = self.params
        self.pipeline = Pipeline.load(p.bundle, backend=p.backend, precision=p.precision,
                                      threshold=p.threshold if p.threshold != 0 else None,
                                      options=OrtOptions(intra_op_threads=p.threads))
        self._qualified_name = self.get_fully_qualified_name()
        self._outputs = self._make_publishers(p.outputs)
        self._diagnostics = self.create_publisher(DiagnosticArray, names.DIAGNOSTICS, OUTPUT_QOS)
        topic = self.resolve_topic_name(p.input_topic)
        self.stats = StreamStats(topic, {"backend": self.pipeline.backend, "precision": self.pipeline.precision_key,
                                         "bundle hash": self.pipeline.bundle.hash,
                                         "bundle": str(self.pipeline.bundle.root)}, p.stale_after_s)
        self._frames = DropOldestQueue(1)
        self._limiter = RateLimiter(p.max_rate_hz)
        self._stop = threading.Event()
        self.create_subscription(CompressedImage if p.compressed else Image, p.input_topic, self._on_image,
                                 self._input_qos())
        self.create_timer(p.diagnostics_period_s, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._work, name="edgessl-inference", daemon=True)
        self._worker.start()
        self.get_logger().info(f"scoring {topic} with {p.bundle} ({self.pipeline.precision_key} on "
                               f"{self.pipeline.backend}); publishing {', '.join(p.outputs)}")

    def _declare_params(self) -> NodeParams:
        values = {}
        for f in fields(NodeParams):
            default = list(f.default) if isinstance(f.default, tuple) else f.default
            desc = ParameterDescriptor(read_only=True, dynamic_typing=isinstance(default, float))
            try:
                values[f.name] = self.declare_parameter(f.name, default, desc).value
            except InvalidParameterTypeException:
                raise EdgesslError(f"parameter {f.name!r} must be of the type of its default "
                                   f"({type(default).__name__}, e.g. {default!r})") from None
        values["outputs"] = tuple(values["outputs"])
        for name in ("threshold", "max_rate_hz", "diagnostics_period_s", "stale_after_s"):
            values[name] = float(values[name])
        return NodeParams(**values)

    def _input_qos(self) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE if self.params.qos_reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.params.qos_depth,
                          reliability=reliability, durability=DurabilityPolicy.VOLATILE)

    def _make_publishers(self, outputs: tuple[str, ...]) -> dict:
        types = {names.SCORE: Float32, names.SCORE_STAMPED: DiagnosticArray, names.DECISION: Bool,
                 names.FEATURES: Float32MultiArray, names.FEATURES_STAMPED: Image, names.HEATMAP: Image}
        return {topic: self.create_publisher(types[topic], topic, OUTPUT_QOS)
                for out in outputs for topic in names.OUTPUT_TOPICS[out]}

    def _on_image(self, msg) -> None:
        self.stats.record_received()
        self._frames.put((msg, time.time()))

    def _work(self) -> None:
        while self._limiter.wait(self._stop):
            try:
                msg, received = self._frames.get(timeout=0.2)
            except queue.Empty:
                continue
            self._limiter.start()
            self._process(msg, received)

    def _process(self, msg, received: float) -> None:
        try:
            image = messages.image_from_msg(msg)
            result = self.pipeline.score(image, with_features=names.FEATURES in self._outputs)
        except EdgesslError as exc:
            self._fail(f"{exc}")
            return
        except Exception as exc:  # a bug or a backend failure: report it and keep serving
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        self._publish(result, msg.header)
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.stats.record_processed((time.time() - (stamp or received)) * 1e3, result.latency_ms["total"])

    def _fail(self, error: str) -> None:
        self.stats.record_failed(error)
        self.get_logger().warning(f"frame skipped: {error}", throttle_duration_sec=5.0)

    def _publish(self, result, header) -> None:
        pub = self._outputs
        if names.SCORE in pub:
            pub[names.SCORE].publish(messages.score_msg(result))
            pub[names.SCORE_STAMPED].publish(messages.score_stamped_msg(result, header, self._qualified_name))
        if names.DECISION in pub:
            pub[names.DECISION].publish(messages.decision_msg(result))
        if names.FEATURES in pub and result.features is not None:
            pub[names.FEATURES].publish(messages.features_msg(result.features))
            pub[names.FEATURES_STAMPED].publish(messages.features_stamped_msg(result.features, header))
        if names.HEATMAP in pub and result.anomaly_map is not None:
            pub[names.HEATMAP].publish(messages.heatmap_msg(result.anomaly_map, header))

    def _publish_diagnostics(self) -> None:
        report = self.stats.report(dropped=self._frames.dropped)
        self._diagnostics.publish(messages.diagnostics_msg(report, self.get_clock().now().to_msg(), self._qualified_name))

    def close(self) -> None:
        """Stop the worker (it finishes the frame in hand) and destroy the node."""
        self._stop.set()
        self._worker.join(timeout=5.0)
        self.destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node until shutdown; exit 2 with one line on stderr when it cannot start."""
    rclpy.init(args=args)
    try:
        node = EdgesslNode()
    except EdgesslError as exc:
        print(f"{names.NODE}: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
