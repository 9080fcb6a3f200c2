"""The edgessl ROS 2 node: camera images in; anomaly score, decision, heatmap, class, features and health out.

A thin adapter over ``edgessl.edge_runtime``: each subscription callback only stores the newest
message in its camera's one-frame slot; the runtime's ``LiveScorer`` (a worker thread) converts,
scores (frames of several cameras waiting together in one batch) and calls back here to publish,
so a slow model never builds a backlog (drops are counted). A frame that fails in any step
(convert, score, publish) is counted, reported on /diagnostics, and the worker goes on. Latencies
are on the node's clock, so ``use_sim_time`` works under bag playback. ``threshold`` and
``max_rate_hz`` can be changed on the running node (validated; a bad value is refused with the reason).
The ``~/adapt`` service (``edgessl_ros.adapt``) adapts the bundle to the frames scored last, which
the caller confirms are normal, and reloads it.

    python -m edgessl_ros.node --ros-args -p bundle:=BUNDLE -p input_topic:=/camera/image_raw
    python -m edgessl_ros.node --ros-args -p bundle:=BUNDLE -p "input_topics:=[/cam0/image_raw, /cam1/image_raw]"
    ros2 run edgessl_ros edgessl_node --ros-args --params-file config/params.yaml

``edgessl_ros.managed`` is the same node as a managed (lifecycle) node.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import fields, replace
from functools import partial

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import InvalidParameterTypeException
from rclpy.executors import ExternalShutdownException
from rclpy.impl.implementation_singleton import rclpy_implementation as _rclpy
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Bool, Float32, Float32MultiArray

from edgessl.edge_runtime.backends.ort import OrtOptions
from edgessl.edge_runtime.drift import NO_PERCENTILES, DriftWatch, drift_config
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.pipeline import Pipeline, Result
from edgessl.edge_runtime.streams.live import CameraSlots, LiveScorer, LiveSteps

from . import messages, names
from .adapt import AdaptService
from .names import NodeParams

OUTPUT_QOS = 10  # reliable, keep last 10: reaches both reliable and best-effort subscribers
OUTPUT_TYPES = {names.SCORE: Float32, names.SCORE_STAMPED: DiagnosticArray, names.DECISION: Bool,
                names.FEATURES: Float32MultiArray, names.FEATURES_STAMPED: Image, names.HEATMAP: Image,
                names.PREDICTION: DiagnosticArray}


def load_pipeline(p: NodeParams) -> Pipeline:
    """The one place the node loads its bundle: every check of ``Pipeline.load``, and the signature
    (``public_key``), the pin (``bundle_sha256``) and the adaptation delta's policy (``delta``,
    ``require_signed_delta``) when they are given. A runtime whose loader cannot check them refuses
    them rather than ignoring them."""
    given = (("public_key", p.public_key, bool(p.public_key)), ("expect_sha256", p.bundle_sha256, bool(p.bundle_sha256)),
             ("delta", p.delta, not p.delta), ("require_signed_delta", True, p.require_signed_delta))
    trust = {key: value for key, value, set_ in given if set_}
    missing = set(trust) - set(inspect.signature(Pipeline.load).parameters)
    if missing:
        raise EdgesslError("parameters 'public_key', 'bundle_sha256', 'delta' and 'require_signed_delta' need a "
                           "runtime that checks bundle signatures, pins and deltas (this one's Pipeline.load has no "
                           f"{', '.join(sorted(missing))})")
    # No spinning: frames arrive tens of milliseconds apart, and ONNX Runtime's workers spinning after
    # each run would burn the cores the camera drivers and DDS need (benchmarks/bench_ros.py measures it).
    return Pipeline.load(p.bundle, backend=p.backend, precision=p.precision, threshold=threshold_override(p),
                         options=OrtOptions(intra_op_threads=p.threads, spinning=False),
                         dla_core=None if p.dla_core < 0 else p.dla_core, **trust)


def served_outputs(p: NodeParams, pipe: Pipeline) -> tuple[str, ...]:
    """The outputs of ``p.outputs`` that the bundle gives (score, decision and heatmap need an anomaly
    detector, class a classifier head); ``EdgesslError`` when it gives none of them."""
    lacks = (names.DETECTOR_OUTPUTS if pipe.detector is None else ()) + \
        (names.CLASSIFIER_OUTPUTS if pipe.classes is None else ())
    served = tuple(out for out in p.outputs if out not in lacks)
    if not served:
        gives = [out for out in names.OUTPUT_TOPICS if out not in lacks]
        raise EdgesslError(f"parameter 'outputs': {p.bundle} gives none of {list(p.outputs)}; it gives {gives}")
    return served


def threshold_override(p: NodeParams) -> float | None:
    return p.threshold if p.threshold != 0 else None


def declare_params(node: Node) -> NodeParams:
    """Declare every parameter of ``NodeParams`` on ``node``; ``EdgesslError`` for a value of the wrong type."""
    values = {}
    for f in fields(NodeParams):
        if f.default is None:
            values[f.name] = _declare_topic_list(node, f.name)
            continue
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        desc = ParameterDescriptor(read_only=f.name not in names.DYNAMIC, dynamic_typing=isinstance(default, float))
        try:
            values[f.name] = node.declare_parameter(f.name, default, desc).value
        except InvalidParameterTypeException:
            raise EdgesslError(f"parameter {f.name!r} must be of the type of its default "
                               f"({type(default).__name__}, e.g. {default!r})") from None
    values["outputs"] = tuple(values["outputs"] or ())  # `-p "outputs:=[]"` arrives without a type: None
    for name in ("threshold", "max_rate_hz", "diagnostics_period_s", "stale_after_s"):
        values[name] = _number(name, values[name])
    return NodeParams(**values)


def _declare_topic_list(node: Node, name: str) -> tuple[str, ...] | None:
    """A string list without a default: None when not given, ``()`` when given empty (``[]`` on the
    command line arrives without a type, so "given" is read from the node's overrides)."""
    value = node.declare_parameter(name, None, ParameterDescriptor(read_only=True, dynamic_typing=True)).value
    if value is None:
        return () if name in node._parameter_overrides else None  # rclpy has no public "was it given"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise EdgesslError(f"parameter {name!r} must be a list of topic names, got {value!r}")
    return tuple(value)


def _number(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise EdgesslError(f"parameter {name!r} must be a number, got {value!r}")
    return float(value)


def resolved_topics(node: Node, params: NodeParams) -> tuple[str, ...]:
    """The camera topics as the node resolves them (namespace, remapping); ``EdgesslError`` for an
    invalid name, or for several cameras whose resolved names collide."""
    key = "input_topics" if params.input_topics is not None else "input_topic"
    cameras = tuple(_resolve(node, key, topic) for topic in params.topics)
    problems = names.topic_problems(cameras) if params.input_topics is not None else []
    if problems:
        raise EdgesslError("; ".join(problems))
    return cameras


def _resolve(node: Node, key: str, topic: str) -> str:
    try:
        return node.resolve_topic_name(topic)
    except _rclpy.RCLError as exc:  # what rcl says is wrong, without its source location
        reason = " ".join(str(exc).split()).split(", at /")[0].removeprefix("failed to resolve name: ")
        raise EdgesslError(f"parameter {key!r}: {topic!r} is not a valid topic name ({reason})") from None


class Scoring:
    """A loaded bundle serving the node's cameras: publishers per camera, subscriptions, the runtime's
    worker, /diagnostics, the ``~/adapt`` service (unless ``adapt_buffer`` is 0). ``managed``: outputs
    on lifecycle publishers (they publish only while the node is active). ``EdgesslError`` when the
    bundle, the outputs or the topics are refused."""

    def __init__(self, node: Node, params: NodeParams, managed: bool = False) -> None:
        self.node, self.params, self.managed = node, params, managed
        self.cameras = resolved_topics(node, params)
        self.multi = params.input_topics is not None
        self.pipeline = load_pipeline(params)
        self.served = served_outputs(params, self.pipeline)
        self.positive_class = self.pipeline.bundle.manifest.get("classifier", {}).get("positive_class")
        qualified = node.get_fully_qualified_name()
        self.labels = {c: f"{qualified} ({c})" if self.multi else qualified for c in self.cameras}
        self.outputs = {c: self._make_publishers(c) for c in self.cameras}
        self.diagnostics = node.create_publisher(DiagnosticArray, names.DIAGNOSTICS, OUTPUT_QOS)
        info = {"backend": self.pipeline.backend, "precision": self.pipeline.precision_key,
                "bundle hash": self.pipeline.bundle.hash, "bundle": str(self.pipeline.bundle.root)}
        self.slots = CameraSlots(self.cameras, info, params.stale_after_s, self._drift_watch(params))
        limit = self.pipeline.pixel_limit(params.max_pixels)
        decode = partial(messages.image_from_msg, max_pixels=limit)
        steps = LiveSteps(decode=decode, publish=self._publish, now=self._now, stamp=messages.stamp_seconds)
        self.scorer = LiveScorer(self.pipeline, self.slots, steps, params.max_rate_hz,
                                 with_features="features" in params.outputs)
        # health is reported on the steady clock: it goes on while a bag's simulated time is paused
        self.timer = node.create_timer(params.diagnostics_period_s, self.publish_diagnostics,
                                       clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.adapt = AdaptService(node, params, self.cameras, decode, self.reload) if params.adapt_buffer else None
        self.subscriptions: list = []

    def _drift_watch(self, params: NodeParams):
        """What makes each camera's drift watch (``drift_window``; none for a bundle without a
        detector, and for one without the held-out percentiles, with a warning)."""
        config, record = drift_config(params.drift_window), self.pipeline.threshold_record
        if record is None:  # no detector: no anomaly scores to watch
            return lambda: None
        if config is not None and not record.holdout_quantiles:
            self.node.get_logger().warning(NO_PERCENTILES)
            config = None
        return (lambda: DriftWatch(record, config)) if config else (lambda: None)

    def _make_publishers(self, camera: str) -> dict:
        create = self.node.create_lifecycle_publisher if self.managed else self.node.create_publisher
        topic = (lambda key: names.camera_output_topic(camera, key)) if self.multi else (lambda key: key)
        return {key: create(OUTPUT_TYPES[key], topic(key), OUTPUT_QOS)
                for out in self.served for key in names.OUTPUT_TOPICS[out]}

    def _now(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def _input_qos(self) -> QoSProfile:
        reliability = (ReliabilityPolicy.RELIABLE if self.params.qos_reliability == "reliable"
                       else ReliabilityPolicy.BEST_EFFORT)
        return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=self.params.qos_depth,
                          reliability=reliability, durability=DurabilityPolicy.VOLATILE)

    def start(self) -> None:
        """Subscribe to every camera and start the worker."""
        msg_type = CompressedImage if self.params.compressed else Image
        self.subscriptions = [
            self.node.create_subscription(msg_type, c, lambda msg, c=c: self.slots.put(c, msg, self._now()),
                                          self._input_qos())
            for c in self.cameras]
        self.scorer.start()

    def stop(self) -> None:
        """Unsubscribe and stop the worker (it finishes the batch in hand)."""
        for sub in self.subscriptions:
            self.node.destroy_subscription(sub)
        self.subscriptions = []
        self.scorer.stop()

    def apply(self, params: NodeParams) -> None:
        """Take the runtime-changeable parameters (``names.DYNAMIC``) of ``params``."""
        self.params = params
        self.pipeline.threshold_override = threshold_override(params)
        self.scorer.limiter.set_rate(params.max_rate_hz)

    def reload(self) -> None:
        """Load the bundle again (its new adaptation delta) and score the next frames with it; each
        camera's drift watch starts again, against the new threshold. ``EdgesslError`` when refused:
        the pipeline loaded before goes on."""
        self.pipeline = self.scorer.pipeline = load_pipeline(self.params)
        watch = self._drift_watch(self.params)
        for stats in self.slots.stats.values():
            stats.drift = watch()

    def _publish(self, camera: str, result: Result, msg) -> None:
        pub, header = self.outputs[camera], msg.header
        if names.SCORE in pub:
            pub[names.SCORE].publish(messages.score_msg(result))
            pub[names.SCORE_STAMPED].publish(messages.score_stamped_msg(result, header, self.labels[camera]))
        if names.DECISION in pub:
            pub[names.DECISION].publish(messages.decision_msg(result))
        if names.FEATURES in pub and result.features is not None:
            pub[names.FEATURES].publish(messages.features_msg(result.features))
            pub[names.FEATURES_STAMPED].publish(messages.features_stamped_msg(result.features, header))
        if names.HEATMAP in pub and result.anomaly_map is not None:
            pub[names.HEATMAP].publish(messages.heatmap_msg(result.anomaly_map, header))
        if names.PREDICTION in pub:
            pub[names.PREDICTION].publish(
                messages.prediction_msg(result, header, self.labels[camera], self.positive_class))
        if self.adapt is not None:
            self.adapt.keep(camera, msg)

    def publish_diagnostics(self) -> None:
        reports = {f"{self.labels[c]}: status": r for c, r in self.slots.reports(self.params.max_rate_hz).items()}
        for report in reports.values():
            report.values["batch size (mean)"] = f"{self.scorer.mean_batch_size:.2f}"
        self.diagnostics.publish(messages.diagnostics_msg(reports, self.node.get_clock().now().to_msg()))

    def destroy(self) -> None:
        """Stop, and release the publishers, the timer and the model."""
        self.stop()
        destroy = self.node.destroy_lifecycle_publisher if self.managed else self.node.destroy_publisher
        for pubs in self.outputs.values():
            for pub in pubs.values():
                destroy(pub)
        self.node.destroy_publisher(self.diagnostics)
        self.node.destroy_timer(self.timer)
        if self.adapt is not None:
            self.adapt.destroy()
        self.outputs, self.pipeline = {}, None


class ParamsMixin:
    """Parameters of both nodes: declared once, checked, and the dynamic ones applied when changed."""

    scoring: Scoring | None = None

    def _init_params(self) -> None:
        """Declare and check every parameter (its type, range and the topics it names): a node with a
        bad value does not start (exit 2, one line; the managed node too, before any ``configure``)."""
        self.params = declare_params(self)
        problems = self.params.problems()
        if problems:
            raise EdgesslError("; ".join(problems))
        resolved_topics(self, self.params)
        self.add_on_set_parameters_callback(self._check_change)
        self.add_post_set_parameters_callback(self._apply_change)

    def _changed(self, parameters) -> NodeParams:
        """The parameters after ``parameters`` are set (``EdgesslError`` with the reason when refused)."""
        changes = {p.name: _number(p.name, p.value) for p in parameters if p.name in names.DYNAMIC}
        candidate = replace(self.params, **changes)
        problems = candidate.problems()  # the others were checked at start and are read-only
        if problems:
            raise EdgesslError("; ".join(problems))
        return candidate

    def _check_change(self, parameters) -> SetParametersResult:
        try:
            self._changed(parameters)
        except EdgesslError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    def _apply_change(self, parameters) -> None:
        self.params = self._changed(parameters)
        if self.scoring is not None:
            self.scoring.apply(self.params)
        changed = ", ".join(f"{p.name} = {p.value}" for p in parameters if p.name in names.DYNAMIC)
        if changed:
            self.get_logger().info(f"parameters changed: {changed}")


class EdgesslNode(ParamsMixin, Node):
    """Declares its parameters, loads the bundle (``EdgesslError`` when it fails its checks), subscribes."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(names.NODE, **node_kwargs)
        self._init_params()
        self.scoring = Scoring(self, self.params)
        self.scoring.start()
        p, pipe = self.params, self.scoring.pipeline
        self.get_logger().info(f"scoring {', '.join(self.scoring.cameras)} with {p.bundle} ({pipe.precision_key} on "
                               f"{pipe.backend}); publishing {', '.join(self.scoring.served)}")

    @property
    def pipeline(self) -> Pipeline:
        return self.scoring.pipeline

    def close(self) -> None:
        """Stop the worker (it finishes the batch in hand) and destroy the node."""
        self.scoring.destroy()
        self.destroy_node()


def run(make_node, argv: list[str] | None = None) -> int:
    """Spin ``make_node()`` until shutdown; exit 2 with one line on stderr when it cannot start."""
    rclpy.init(args=argv)
    try:
        node = make_node()
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


def main(args: list[str] | None = None) -> int:
    return run(EdgesslNode, args)


if __name__ == "__main__":
    sys.exit(main())
