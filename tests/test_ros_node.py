"""The edgessl ROS 2 node in-process with real rclpy over real DDS (loopback profile, own domain):
outputs carry the input header and the runtime's score, malformed frames are counted and reported
while the node keeps running, a silent topic is reported, a bad bundle is refused. Also the ament
package's files (package.xml, setup.py, params.yaml, launch file) against names.py."""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml

from requires import require
from ros_support import (REPO, Probe, fresh_domain_id, image_msg, patch_bundle, python, ros,  # noqa: F401 (fixtures)
                         ros_env, sample_image, spin_until, start_node)

pytestmark = pytest.mark.ros
PKG = REPO / "ros2_node"


# ---- the package's files (no rclpy needed) -------------------------------------------------------

def test_package_xml_is_an_ament_python_format_3_package():
    root = ET.parse(PKG / "package.xml").getroot()
    assert root.tag == "package" and root.get("format") == "3"
    assert root.findtext("name") == "edgessl_ros"
    deps = {e.text for e in root if e.tag.endswith("depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "python3-numpy", "python3-opencv"} <= deps
    assert root.find("export/build_type").text == "ament_python"
    assert (PKG / "resource" / "edgessl_ros").is_file()
    assert "script_dir=$base/lib/edgessl_ros" in (PKG / "setup.cfg").read_text()


def test_setup_py_installs_marker_launch_and_config():
    out = subprocess.run([python(), "setup.py", "--name"], cwd=PKG, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().splitlines()[-1] == "edgessl_ros"
    src = (PKG / "setup.py").read_text()
    for piece in ("resource_index/packages", "package.xml", "launch/*.launch.py", "config/*.yaml",
                  "edgessl_node = ", ".node:main"):
        assert piece in src


def test_params_yaml_and_launch_file_use_the_names_defined_once():
    from edgessl_ros.names import NODE, NodeParams

    text = (PKG / "config" / "params.yaml").read_text()
    params = yaml.safe_load(text)[NODE]["ros__parameters"]
    assert params == {"bundle": ""}  # every default is written once, in NodeParams
    documented = {line.split(":")[0].strip("# ") for line in text.splitlines() if line.startswith("#   ")}
    assert documented == set(NodeParams.names()) - {"bundle"}
    launch = PKG / "launch" / "edgessl.launch.py"
    tree = ast.parse(launch.read_text())
    top_imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert all(getattr(n, "module", "") == "edgessl_ros.names" for n in top_imports)  # launch imported lazily
    spec = importlib.util.spec_from_file_location("edgessl_launch", launch)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert callable(module.generate_launch_description) and module.NODE == NODE


def test_param_problems_are_reported_in_one_line_each():
    from edgessl_ros.names import NodeParams

    problems = NodeParams(bundle="", qos_reliability="sometimes", outputs=("score", "mood")).problems()
    assert any("'bundle' is required" in p for p in problems)
    assert any("qos_reliability" in p for p in problems)
    assert any("'mood'" in p for p in problems)


# ---- the node over DDS ----------------------------------------------------------------------------

def test_outputs_carry_the_input_header_and_the_runtime_score(ros, patch_bundle):
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl_ros import names

    node = start_node(ros, patch_bundle, diagnostics_period_s=0.3)
    probe = Probe(ros)
    img = sample_image(3, 30, 40)
    msg = image_msg(img, "bgr8", "cam_test", 1_700_000_000_123_456_789, row_padding=4)
    want = Pipeline.load(patch_bundle).score(img, with_features=True)
    everything = [names.SCORE, names.SCORE_STAMPED, names.DECISION, names.FEATURES, names.FEATURES_STAMPED,
                  names.HEATMAP]
    assert spin_until(ros[1], lambda: all(t in probe.got for t in everything), 15, lambda: probe.pub.publish(msg))
    for topic in (names.SCORE_STAMPED, names.FEATURES_STAMPED, names.HEATMAP):
        header = probe.got[topic][-1].header
        assert header.frame_id == "cam_test"
        assert (header.stamp.sec, header.stamp.nanosec) == (1_700_000_000, 123_456_789)
    assert probe.got[names.SCORE][-1].data == pytest.approx(want.score, rel=1e-6)
    assert probe.got[names.DECISION][-1].data == want.is_anomaly
    stamped = {kv.key: kv.value for kv in probe.got[names.SCORE_STAMPED][-1].status[0].values}
    assert float(stamped["score"]) == pytest.approx(want.score, rel=1e-5)
    assert stamped["is_anomaly"] == str(want.is_anomaly).lower()
    np.testing.assert_allclose(probe.got[names.FEATURES][-1].data, want.features, rtol=1e-6)
    feats = probe.got[names.FEATURES_STAMPED][-1]
    assert (feats.encoding, feats.height, feats.width) == ("32FC1", 1, want.features.size)
    heat = probe.got[names.HEATMAP][-1]
    assert (heat.encoding, heat.height, heat.width) == ("32FC1", 30, 40)
    np.testing.assert_allclose(np.frombuffer(heat.data, "<f4").reshape(30, 40), want.anomaly_map, rtol=1e-5, atol=1e-6)
    assert spin_until(ros[1], lambda: "/diagnostics" in probe.got and int(probe.latest_diagnostics()["frames processed"]) > 0)
    diag = probe.latest_diagnostics()
    assert probe.got["/diagnostics"][-1].status[0].name == "/edgessl_node: status"
    assert diag["bundle hash"] == node.pipeline.bundle.hash and diag["backend"] == "ort-cpu"
    assert diag["precision"] == "fp32" and diag["latency p99 (ms)"] != "n/a"
    assert diag["drift"].startswith("filling (") and diag["drift"].endswith(" of 100)")  # the default window


def test_malformed_frames_are_counted_reported_and_the_node_goes_on(ros, patch_bundle):
    from edgessl_ros import names

    start_node(ros, patch_bundle, diagnostics_period_s=0.3, outputs=("score",))
    probe = Probe(ros)
    bad = image_msg(sample_image(3), "rgb8", "cam", 5)
    bad.step = 7  # smaller than a row
    assert spin_until(ros[1], lambda: "/diagnostics" in probe.got and probe.latest_diagnostics()["frames failed"] != "0",
                      15, lambda: probe.pub.publish(bad))
    diag = probe.latest_diagnostics()
    assert "step 7 is smaller than" in diag["last error"]
    assert names.SCORE not in probe.got
    good = image_msg(sample_image(1), "mono8", "cam", 6)
    assert spin_until(ros[1], lambda: names.SCORE in probe.got, 15, lambda: probe.pub.publish(good))
    assert names.FEATURES not in probe.got  # only the requested outputs are published


def test_compressed_input(ros, patch_bundle):
    import cv2
    from sensor_msgs.msg import CompressedImage

    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl_ros import names

    start_node(ros, patch_bundle, compressed=True, qos_reliability="reliable", outputs=("score",))
    probe = Probe(ros, compressed=True, reliable=True)
    img = sample_image(3)
    msg = CompressedImage(format="rgb8; png compressed rgb8", data=cv2.imencode(".png", img[:, :, ::-1].copy())[1].tobytes())
    assert spin_until(ros[1], lambda: names.SCORE in probe.got, 15, lambda: probe.pub.publish(msg))
    assert probe.got[names.SCORE][-1].data == pytest.approx(Pipeline.load(patch_bundle).score(img).score, rel=1e-6)


def test_a_topic_that_never_publishes_is_reported(ros, patch_bundle):
    start_node(ros, patch_bundle, diagnostics_period_s=0.2, input_topic="/nobody/publishes/this")
    probe = Probe(ros)
    assert spin_until(ros[1], lambda: len(probe.got.get("/diagnostics", [])) >= 2)
    diag = probe.latest_diagnostics()
    assert diag["level"] == 1 and "no input received on /nobody/publishes/this" in diag["message"]


def test_bundle_failing_its_checks_is_refused(ros, patch_bundle, tmp_path):
    from edgessl.edge_runtime.errors import EdgesslError

    tampered = tmp_path / "tampered"
    shutil.copytree(patch_bundle, tampered)
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(EdgesslError, match="model.onnx does not match its sha256"):
        start_node(ros, tampered)
    with pytest.raises(EdgesslError, match="'bundle' is required"):
        start_node(ros, "")


def test_node_process_exits_non_zero_with_the_reason(tmp_path):
    require("rclpy", reason="rclpy (ros-rclpy wheels, the `ros` extra) is not importable")
    proc = subprocess.run([python(), "-m", "edgessl_ros.node", "--ros-args", "-p", f"bundle:={tmp_path}"],
                          env=ros_env(fresh_domain_id()), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "edgessl_node: error:" in proc.stderr and "not a bundle (no manifest.json" in proc.stderr
    assert "Traceback" not in proc.stderr


# A bad value of each kind (the attacks): the node does not start, and says why in one line.
BAD_START = {
    "outputs:=[]": "parameter 'outputs' must name at least one of",
    "diagnostics_period_s:=.nan": "parameter 'diagnostics_period_s' must be from 0.1 to 3600, got nan",
    "diagnostics_period_s:=0.0008": "parameter 'diagnostics_period_s' must be from 0.1 to 3600, got 0.0008",
    "stale_after_s:=-1.0": "parameter 'stale_after_s' must be from 0.1 to 86400, got -1.0",
    "max_rate_hz:=0.001": "parameter 'max_rate_hz' must be from 0.1 to 1000 (or 0: no limit), got 0.001",
    "input_topic:=not a topic!": "parameter 'input_topic': 'not a topic!' is not a valid topic name",
    "input_topics:=[/cam0/image, /a//b]": "parameter 'input_topics': '/a//b' is not a valid topic name",
    "qos_depth:=0": "parameter 'qos_depth' must be from 1 to 1000, got 0",
    "drift_window:=5": "parameter 'drift_window' must be from 10 to 1.07374e+09 (or 0: no drift watch), got 5",
    "adapt_buffer:=-1": "parameter 'adapt_buffer' must be from 1 to 10000 (or 0: no ~/adapt service), got -1",
    "backend:=gpu-please": "parameter 'backend' must be one of",
    "bundle_sha256:=abc": "parameter 'bundle_sha256' must be the bundle's sha256, 64 hex digits",
}


@pytest.mark.parametrize("module", ["edgessl_ros.node", "edgessl_ros.managed"])
@pytest.mark.parametrize("override", list(BAD_START))
def test_bad_start_parameters_exit_2_in_one_line(override, module, patch_bundle):
    require("rclpy", reason="rclpy (ros-rclpy wheels, the `ros` extra) is not importable")
    proc = subprocess.run([python(), "-m", module, "--ros-args", "-p", f"bundle:={patch_bundle}", "-p", override],
                          env=ros_env(fresh_domain_id()), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [proc.stderr.strip()] and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("edgessl_node: error: ") and BAD_START[override] in proc.stderr


def decisions_caught_up(node, probe):
    """A condition: every scored frame's decision has arrived too (the two topics are delivered apart).
    Waits first until both of the node's publishers have matched the probe: a frame published before
    would deliver one of the two and never the other."""
    from edgessl_ros import names

    (camera,) = node.scoring.cameras
    pubs = [node.scoring.outputs[camera][topic] for topic in (names.SCORE_STAMPED, names.DECISION)]
    assert spin_until(probe.executor, lambda: all(p.get_subscription_count() > 0 for p in pubs), 15)
    return lambda: len(probe.got.get(names.DECISION, [])) == len(probe.got.get(names.SCORE_STAMPED, []))


def every_frame_handled(probe) -> bool:
    """By the newest /diagnostics, every frame received was scored or dropped (none yet: False)."""
    d = probe.latest_diagnostics()
    return "frames received" in d and \
        int(d["frames processed"]) + int(d["frames dropped"]) == int(d["frames received"])


def test_rate_limit_drops_all_but_the_newest_and_threshold_override(ros, patch_bundle):
    from edgessl_ros import names

    node = start_node(ros, patch_bundle, max_rate_hz=1.0, threshold=-1e6, diagnostics_period_s=0.2,
                      qos_reliability="reliable", qos_depth=20, outputs=("score", "decision"))
    probe = Probe(ros, reliable=True)
    decided_every_scored_frame = decisions_caught_up(node, probe)
    frames = [image_msg(sample_image(1), "mono8", "cam", stamp) for stamp in range(1, 11)]
    assert spin_until(ros[1], lambda: probe.pub.get_subscription_count() > 0)
    for msg in frames:  # a burst much faster than 1 Hz
        probe.pub.publish(msg)

    def settled() -> bool:  # DDS may lose frames published while matching completes: count what arrived
        received = int(probe.latest_diagnostics().get("frames received", 0))
        newest_scored = any(m.header.stamp.nanosec == 10 for m in probe.got.get(names.SCORE_STAMPED, []))
        return received >= 3 and newest_scored and decided_every_scored_frame() and every_frame_handled(probe)

    assert spin_until(ros[1], settled, 30)
    d = probe.latest_diagnostics()
    assert int(d["frames dropped"]) >= 1
    assert probe.got[names.SCORE_STAMPED][-1].header.stamp.nanosec == 10  # the newest frame won
    assert all(m.data for m in probe.got[names.DECISION])  # threshold -1e6: everything is an anomaly


def test_colcon_builds_and_installs_the_ament_package(tmp_path):
    colcon = shutil.which("colcon") or str(REPO / ".venv" / "bin" / "colcon")
    if not Path(colcon).exists():
        pytest.skip("colcon is not installed (pip install colcon-core colcon-ros colcon-python-setup-py)")
    ws = tmp_path / "ws"
    shutil.copytree(PKG, ws / "src" / "edgessl_ros", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = subprocess.run([colcon, "build", "--base-paths", "src"], cwd=ws, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    share = ws / "install" / "edgessl_ros" / "share"
    assert (share / "ament_index" / "resource_index" / "packages" / "edgessl_ros").is_file()
    assert (share / "edgessl_ros" / "launch" / "edgessl.launch.py").is_file()
    assert (share / "edgessl_ros" / "config" / "params.yaml").is_file()
    assert (ws / "install" / "edgessl_ros" / "lib" / "edgessl_ros" / "edgessl_node").is_file()


# ---- failures in any step, the node's clock, parameters changed at runtime ---------------------------

def test_a_publish_that_fails_is_counted_reported_and_the_worker_goes_on(ros, patch_bundle):
    from edgessl_ros import names

    node = start_node(ros, patch_bundle, diagnostics_period_s=0.2, outputs=("score", "decision"))
    probe = Probe(ros)
    msg = image_msg(sample_image(1), "mono8", "cam", 7)
    assert spin_until(ros[1], lambda: names.DECISION in probe.got and names.SCORE in probe.got, 15,
                      lambda: probe.pub.publish(msg))
    # a real rclpy failure: the decision publisher is destroyed under the node, so publishing raises
    (camera,) = node.scoring.cameras
    node.destroy_publisher(node.scoring.outputs[camera][names.DECISION])
    scores_before = len(probe.got[names.SCORE])

    def failed_twice() -> bool:
        d = probe.latest_diagnostics()
        return int(d.get("frames failed", 0)) >= 2 and len(probe.got[names.SCORE]) >= scores_before + 2

    assert spin_until(ros[1], failed_twice, 20, lambda: probe.pub.publish(msg))
    d = probe.latest_diagnostics()
    assert d["last error"].startswith("publish: ") and d["level"] == 1  # WARN, with the step that failed
    assert node.scoring.scorer.running  # the worker survived every failure and scores the next frame


def test_latency_is_measured_on_the_node_clock_under_simulated_time(ros, patch_bundle):
    from rosgraph_msgs.msg import Clock

    from edgessl_ros import names

    node = start_node(ros, patch_bundle, use_sim_time=True, diagnostics_period_s=0.2, outputs=("score",))
    probe = Probe(ros)
    clock_pub = probe.node.create_publisher(Clock, "/clock", 10)
    sim_now = Clock()
    sim_now.clock.sec = 1000  # a bag's time, far from the wall clock
    assert spin_until(ros[1], lambda: node.get_clock().now().nanoseconds == 1000 * 10**9, 15,
                      lambda: clock_pub.publish(sim_now))
    msg = image_msg(sample_image(1), "mono8", "cam", 999_900_000_000)  # stamped 100 ms before the sim time
    assert spin_until(ros[1], lambda: names.SCORE in probe.got, 15, lambda: probe.pub.publish(msg))
    assert spin_until(ros[1], lambda: probe.latest_diagnostics().get("latency p50 (ms)") not in (None, "n/a"), 10)
    d = probe.latest_diagnostics()
    assert d["latency p50 (ms)"] == "100.0" and d["latency p99 (ms)"] == "100.0"
    assert probe.got["/diagnostics"][-1].header.stamp.sec == 1000


def test_threshold_and_rate_change_at_runtime_through_the_parameter_service(ros, patch_bundle):
    from rcl_interfaces.msg import Parameter as ParameterMsg
    from rcl_interfaces.msg import ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    from edgessl_ros import names

    node = start_node(ros, patch_bundle, diagnostics_period_s=0.2, qos_reliability="reliable", qos_depth=20,
                      outputs=("score", "decision"))
    probe = Probe(ros, reliable=True)
    decided_every_scored_frame = decisions_caught_up(node, probe)
    client = probe.node.create_client(SetParameters, f"/{names.NODE}/set_parameters")

    def set_param(name: str, value):
        kind = {float: ("double_value", ParameterType.PARAMETER_DOUBLE),
                str: ("string_value", ParameterType.PARAMETER_STRING)}[type(value)]
        pv = ParameterValue(type=kind[1], **{kind[0]: value})
        return probe.call(client, SetParameters.Request(parameters=[ParameterMsg(name=name, value=pv)])).results[0]

    msg = image_msg(sample_image(1), "mono8", "cam", 1)
    assert spin_until(ros[1], lambda: names.DECISION in probe.got, 15, lambda: probe.pub.publish(msg))
    assert probe.got[names.DECISION][-1].data is False  # the digit is normal under the bundle's threshold

    refused = set_param("threshold", float("nan"))
    assert not refused.successful and "'threshold' must be a finite number" in refused.reason
    refused = set_param("max_rate_hz", "fast")
    assert not refused.successful and "'max_rate_hz' must be a number" in refused.reason
    refused = set_param("max_rate_hz", 0.001)  # scoring would all but stop
    assert not refused.successful and "'max_rate_hz' must be from 0.1 to 1000 (or 0: no limit)" in refused.reason
    assert not set_param("bundle", "/elsewhere").successful  # read-only on a running node

    assert set_param("threshold", -1e6).successful and set_param("max_rate_hz", 1.0).successful
    assert spin_until(ros[1], lambda: decided_every_scored_frame() and every_frame_handled(probe), 15)
    probe.got.clear()  # nothing of the frames above in flight: what follows is under the new values
    for stamp in range(10, 20):  # a burst much faster than the new 1 Hz
        probe.pub.publish(image_msg(sample_image(1), "mono8", "cam", stamp))

    def settled() -> bool:
        newest = any(m.header.stamp.nanosec == 19 for m in probe.got.get(names.SCORE_STAMPED, []))
        return newest and decided_every_scored_frame() and every_frame_handled(probe)

    assert spin_until(ros[1], settled, 30)
    assert int(probe.latest_diagnostics()["frames dropped"]) >= 1  # the new rate applies: newest wins
    assert probe.got[names.DECISION] and all(m.data for m in probe.got[names.DECISION])  # the new threshold
    values = {kv.key: kv.value for kv in probe.got[names.SCORE_STAMPED][-1].status[0].values}
    assert float(values["threshold"]) == -1e6


def test_bundle_sha256_pins_the_bundle(ros, patch_bundle):
    import inspect

    from edgessl.edge_runtime.bundle import Bundle
    from edgessl.edge_runtime.errors import EdgesslError
    from edgessl.edge_runtime.pipeline import Pipeline

    if "expect_sha256" not in inspect.signature(Pipeline.load).parameters:
        pytest.skip("this runtime's Pipeline.load has no expect_sha256 (bundle pins come with the trust work)")
    with pytest.raises(EdgesslError, match="pinned"):
        start_node(ros, patch_bundle, bundle_sha256="0" * 64)
    pinned = Bundle.load(patch_bundle).hash
    assert start_node(ros, patch_bundle, bundle_sha256=pinned).pipeline.bundle.hash == pinned


def test_the_node_uses_the_adaptation_delta_unless_told_not_to(ros, tmp_path):
    import cv2

    from edgessl.cli import main
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.errors import EdgesslError
    from runtime_bundle import make_bundle

    bundle = make_bundle(tmp_path / "bundle", "knn", graph_scores=True, fit_record=True)
    train = open_dataset("digits", "train")
    (tmp_path / "frames").mkdir()
    for i in np.flatnonzero(train.labels == 0)[-20:]:
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.png"), train.image(int(i)))
    base = start_node(ros, bundle).pipeline.threshold_record
    assert main(["adapt", "--bundle", str(bundle), "--data", str(tmp_path / "frames")]) == 0
    assert start_node(ros, bundle).pipeline.threshold_record != base
    assert start_node(ros, bundle, delta=False).pipeline.threshold_record == base
    assert main(["keygen", "--out", str(tmp_path / "key")]) == 0
    assert main(["sign", "--bundle", str(bundle), "--key", str(tmp_path / "key")]) == 0
    with pytest.raises(EdgesslError, match="adapt: not signed"):
        start_node(ros, bundle, public_key=str(tmp_path / "key.pub"), require_signed_delta=True)
