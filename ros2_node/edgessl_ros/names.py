"""The node's interface, defined once: its name, its topics, its parameters and their defaults.

The node, the launch file, ``config/params.yaml`` and the tests all read these names from here.
This module imports neither rclpy nor the runtime's heavy parts (only its lists of backends and
precisions, and ``BundleOptions`` for the defaults it shares with every command that loads a
bundle), so a launch file can use it.

Topics are relative, so they land in the node's namespace and can be remapped as usual. With
several cameras (``input_topics``), each camera's outputs land in its own namespace instead, the
namespace of its input topic (``/cam0/image_raw`` -> ``/cam0/anomaly/score``):
    anomaly/score             std_msgs/Float32            normalised score (1.0 = decision threshold)
    anomaly/score_stamped     diagnostic_msgs/DiagnosticArray
                              header = input header; one status, level OK (normal) / WARN (anomaly),
                              values score, raw_score, threshold, is_anomaly, processing_ms
    anomaly/decision          std_msgs/Bool               score >= threshold
    anomaly/features          std_msgs/Float32MultiArray  the embedding (D floats)
    anomaly/features_stamped  sensor_msgs/Image           the embedding as a 1 x D 32FC1 image, input header
    anomaly/heatmap           sensor_msgs/Image           anomaly map, 32FC1 at the input size, input header
    classifier/prediction     diagnostic_msgs/DiagnosticArray
                              header = input header; one status, message = the predicted class,
                              level WARN (the bundle's positive class) / OK, values class,
                              probability, p(<class>) for every class, processing_ms
    /diagnostics              diagnostic_msgs/DiagnosticArray  node health, about once per second,
                              one status per camera

A bundle gives the outputs it has the parts for: score, decision and heatmap need an anomaly
detector, class a classifier head; features every bundle gives. The node advertises only those
(a head-only bundle has no anomaly/score topic at all, rather than one that never publishes).
The prediction is a ``DiagnosticArray``, like ``anomaly/score_stamped``: a standard message with
a header (``message_filters`` pairs it with its image), readable by ``ros2 topic echo`` and rqt,
whose level flags the positive class; vision_msgs is not a core package, and a message of our own
would need a compiled interface package on every machine.

Service (in the node's namespace; ``adapt_buffer`` 0: none):
    ~/adapt                   std_srvs/Trigger            the caller confirms that the frames the node
                              scored last (each camera's last ``adapt_buffer``) are normal: they are
                              added to the detector's memory banks as a sealed delta beside the bundle
                              (``edgessl adapt --accept-flagged``), the node scores with it from the
                              next frame, and answers with one line (``edgessl_ros/adapt.py``)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from edgessl.edge_runtime.backends.base import CHOICES as BACKENDS
from edgessl.edge_runtime.drift import MIN_WINDOW, DriftConfig
from edgessl.edge_runtime.pipeline_options import PRECISIONS, BundleOptions  # light: dataclasses only

PACKAGE = "edgessl_ros"
NODE = "edgessl_node"
EXECUTABLE = "edgessl_node"

SCORE = "anomaly/score"
SCORE_STAMPED = "anomaly/score_stamped"
DECISION = "anomaly/decision"
FEATURES = "anomaly/features"
FEATURES_STAMPED = "anomaly/features_stamped"
HEATMAP = "anomaly/heatmap"
PREDICTION = "classifier/prediction"
DIAGNOSTICS = "/diagnostics"
ADAPT = "~/adapt"

# The `outputs` parameter's choices and the topics each one publishes.
OUTPUT_TOPICS = {
    "score": (SCORE, SCORE_STAMPED),
    "decision": (DECISION,),
    "features": (FEATURES, FEATURES_STAMPED),
    "heatmap": (HEATMAP,),
    "class": (PREDICTION,),
}
# The outputs only a bundle with an anomaly detector gives, and those only a bundle with a classifier head gives.
DETECTOR_OUTPUTS = ("score", "decision", "heatmap")
CLASSIFIER_OUTPUTS = ("class",)
RELIABILITIES = ("best_effort", "reliable")
# Parameters a running node accepts changes of (through its parameter services); the others are read-only.
DYNAMIC = ("threshold", "max_rate_hz")
# The ranges of the numeric parameters (inclusive): a value outside is refused at start (and at runtime).
RANGES = {
    "dla_core": (-1, 15),
    "threads": (0, 1024),
    "qos_depth": (1, 1000),
    "max_rate_hz": (0.1, 1000.0),  # or 0: no limit; below 0.1 Hz scoring would all but stop
    "diagnostics_period_s": (0.1, 3600.0),  # more than 10 reports per second would flood /diagnostics
    "stale_after_s": (0.1, 86400.0),
    "max_pixels": (0, 1 << 40),  # 0: the runtime's default
    "drift_window": (MIN_WINDOW, 1 << 30),  # or 0: no drift watch
    "adapt_buffer": (1, 10000),  # or 0: no ~/adapt service
}
OFF_AT_ZERO = {"max_rate_hz": "no limit", "drift_window": "no drift watch",
               "adapt_buffer": "no ~/adapt service"}  # parameters that 0 turns off

# Fast DDS reads an XML profile named by FASTRTPS_DEFAULT_PROFILES_FILE in 2.x (ROS 2 Jazzy) and by
# FASTDDS_DEFAULT_PROFILES_FILE in 3.x (Kilted): set both. Without the profile's shared-memory
# segment, 640x480 rgb8 frames between two processes were lost in bulk here (89% measured).
FASTDDS_PROFILE_VARS = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")


def fastdds_profile_env(profile: str) -> dict[str, str]:
    """Environment entries that make every Fast DDS version load ``profile``."""
    return {var: str(profile) for var in FASTDDS_PROFILE_VARS}


@dataclass(frozen=True)
class NodeParams:
    """Every node parameter: the field name is the ROS parameter name, the value its default.

    bundle: path of an edgessl bundle (required).  public_key: an Ed25519 public key file; the bundle
    must then carry a valid signature.  bundle_sha256: pin one bundle (its manifest's sha256).
    delta: use the bundle's adaptation delta (``edgessl adapt``) when it has one (False: ignore it).
    require_signed_delta: refuse an adaptation delta not signed with ``public_key``.
    backend: auto | ort-cpu | ort-cuda | ort-tensorrt | tensorrt.  precision: fp32 | int8.  dla_core:
    run the engine built for that DLA core (Jetson; -1: the GPU's engine).  threads:
    ONNX Runtime intra-op threads (0: one per core; fewer leave cores to camera drivers).  threshold:
    decision threshold override in normalised units (0 keeps the bundle's, which is 1.0; 0 is the
    median normal score, so overrides are non-zero); changeable at runtime.  input_topic: the camera
    topic.  input_topics: several camera topics scored by this one node (None: not given, use
    input_topic); frames waiting together are scored in one batch.  compressed: subscribe to
    sensor_msgs/CompressedImage instead of sensor_msgs/Image.  qos_reliability / qos_depth: the input
    subscriptions' QoS (default: sensor-data QoS, best effort, keep last 5).  outputs: which of
    OUTPUT_TOPICS to publish, of those the bundle gives.  max_rate_hz: start at most this many
    batches per second (0: as fast as inference allows); changeable at runtime.
    diagnostics_period_s: /diagnostics period.
    stale_after_s: a camera silent for longer than this is reported as stalled.  max_pixels: refuse,
    before decoding, an image of more pixels (0: the runtime's default for the bundle's input size,
    ``images.pixel_limit``; a 335-byte JPEG can declare 30000 x 30000 pixels).  drift_window: each
    camera's last N raw scores are tested against the bundle's held-out normal scores (WARN on
    /diagnostics on an alarm; ``edge_runtime/drift.py``; 0: no drift watch).  adapt_buffer: each
    camera's last N scored frames are kept for the ``~/adapt`` service (0: no service).
    """

    bundle: str = ""
    public_key: str = ""
    bundle_sha256: str = ""
    delta: bool = BundleOptions.delta
    require_signed_delta: bool = BundleOptions.require_signed_delta
    backend: str = BundleOptions.backend
    precision: str = BundleOptions.precision
    dla_core: int = -1  # ROS parameters have no None: -1 is BundleOptions.dla_core's None, the GPU
    threads: int = BundleOptions.threads
    threshold: float = 0.0
    input_topic: str = "image"
    input_topics: tuple[str, ...] | None = None
    compressed: bool = False
    qos_reliability: str = "best_effort"
    qos_depth: int = 5
    outputs: tuple[str, ...] = tuple(OUTPUT_TOPICS)
    max_rate_hz: float = 0.0
    diagnostics_period_s: float = 1.0
    stale_after_s: float = 5.0
    max_pixels: int = 0
    drift_window: int = DriftConfig.window
    adapt_buffer: int = 50

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @property
    def topics(self) -> tuple[str, ...]:
        """The camera topics: ``input_topics`` when given, else ``input_topic`` alone."""
        return (self.input_topic,) if self.input_topics is None else self.input_topics

    def problems(self) -> list[str]:
        """What is wrong with these values, one line each (empty when they are usable): every
        parameter is checked against its choices or its range (``RANGES``)."""
        out = []
        if not self.bundle:
            out.append("parameter 'bundle' is required: the path of a bundle made by `edgessl export`")
        for name, choices in (("qos_reliability", RELIABILITIES), ("backend", BACKENDS), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                out.append(f"parameter {name!r} must be one of {choices}, got {getattr(self, name)!r}")
        if self.bundle_sha256 and (len(self.bundle_sha256) != 64 or
                                   any(c not in "0123456789abcdef" for c in self.bundle_sha256.lower())):
            out.append("parameter 'bundle_sha256' must be the bundle's sha256, 64 hex digits "
                       "(`edgessl bundle inspect` prints it)")
        if not self.outputs:
            out.append(f"parameter 'outputs' must name at least one of {list(OUTPUT_TOPICS)}")
        unknown = sorted(set(self.outputs) - set(OUTPUT_TOPICS))
        if unknown:
            out.append(f"parameter 'outputs' has unknown entries {unknown}; choose from {list(OUTPUT_TOPICS)}")
        if not math.isfinite(self.threshold):
            out.append(f"parameter 'threshold' must be a finite number, got {self.threshold}")
        for name, (lo, hi) in RANGES.items():
            value = getattr(self, name)
            if name in OFF_AT_ZERO and value == 0:
                continue
            if not (math.isfinite(value) and lo <= value <= hi):
                zero = f" (or 0: {OFF_AT_ZERO[name]})" if name in OFF_AT_ZERO else ""
                out.append(f"parameter {name!r} must be from {lo:g} to {hi:g}{zero}, got {value}")
        if self.input_topics is None and not self.input_topic:
            out.append("parameter 'input_topic' must name the camera topic")
        if self.input_topics is not None:
            out += topic_problems(self.input_topics)
        return out


def topic_problems(topics: tuple[str, ...]) -> list[str]:
    """What is wrong with a list of camera topics; the node checks them again once resolved, when
    ``image`` and ``/image`` become the same topic and namespaces can be compared."""
    if not topics or not all(topics):
        return ["parameter 'input_topics' must name at least one camera topic and no empty one "
                "(for one camera, input_topic is enough)"]
    twice = sorted({t for t in topics if topics.count(t) > 1})
    if twice:
        return [f"parameter 'input_topics' names {', '.join(twice)} more than once"]
    spaces = [output_namespace(t) for t in topics]
    shared = sorted({ns for ns in spaces if spaces.count(ns) > 1})
    if shared:
        return [f"parameter 'input_topics': several topics in namespace {', '.join(ns or '/' for ns in shared)}, whose outputs "
                "would mix; give each camera its own namespace (/cam0/image_raw, /cam1/image_raw)"]
    return []


def output_namespace(topic: str) -> str:
    """Where a camera's outputs go when a node scores several: the namespace of its resolved
    (absolute) input topic, ``/cam0`` for ``/cam0/image_raw``, ``""`` (the root) for ``/image``."""
    return topic.rsplit("/", 1)[0]


def camera_output_topic(camera_topic: str, output: str) -> str:
    """The topic of ``output`` (one of OUTPUT_TOPICS' values) for a camera of a multi-camera node."""
    return f"{output_namespace(camera_topic)}/{output}"
