"""Two processes over loopback DDS: the test-pattern camera publishes an image file, the node (started
from the package's params.yaml) scores it; this test listens to the node's outputs. Best-effort
delivery is never asserted to be lossless: only that what arrives is right."""

from __future__ import annotations

import json
import signal
import subprocess

import cv2
import pytest
import yaml

from requires import require
from ros_support import REPO, fresh_domain_id, python, ros_env, sample_image, spin_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]
FRAMES = 30


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    from runtime_bundle import make_bundle

    return make_bundle(tmp_path_factory.mktemp("ros_2p") / "bundle", detector="knn")


def stop(proc: subprocess.Popen) -> int:
    """SIGINT (what Ctrl-C and ros2 launch send), then kill if it hangs; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            return proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


def counts(diag) -> dict[str, int]:
    values = {kv.key: kv.value for kv in diag.status[0].values}
    return {k: int(values[f"frames {k}"]) for k in ("received", "processed", "dropped", "failed")}


def settled(diag) -> bool:
    """Every frame the node received is accounted for (none in flight)."""
    c = counts(diag)
    return c["received"] > 0 and c["processed"] + c["dropped"] + c["failed"] == c["received"]


def test_camera_process_to_node_process(bundle, tmp_path, monkeypatch):
    rclpy = require("rclpy", reason="rclpy (ros-rclpy wheels, the `ros` extra) is not importable")
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor

    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl_ros import names

    domain = fresh_domain_id()
    env = ros_env(domain)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    image = sample_image(3, 48, 64)
    png = tmp_path / "frame.png"
    cv2.imwrite(str(png), image[:, :, ::-1])
    params = yaml.safe_load((REPO / "ros2_node" / "config" / "params.yaml").read_text())
    params[names.NODE]["ros__parameters"].update(bundle=str(bundle), input_topic="/cam/image", diagnostics_period_s=0.5)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump(params))

    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    executor = SingleThreadedExecutor(context=ctx)
    listener = rclpy.create_node("listener", context=ctx)
    executor.add_node(listener)
    got: dict[str, list] = {"scores": [], "diag": []}
    listener.create_subscription(DiagnosticArray, "/" + names.SCORE_STAMPED, got["scores"].append, 50)
    listener.create_subscription(DiagnosticArray, names.DIAGNOSTICS, got["diag"].append, 10)
    node = subprocess.Popen([python(), "-m", "edgessl_ros.node", "--ros-args", "--params-file", str(params_file)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    camera = None
    try:
        assert spin_until(executor, lambda: got["diag"] or node.poll() is not None, 30), "node never reported"
        assert node.poll() is None, node.stdout.read()
        camera = subprocess.Popen([python(), "-m", "edgessl_ros.camera", "--image", str(png), "--topic", "/cam/image",
                                   "--frames", str(FRAMES), "--rate", "15", "--frame-id", "cam_2p"],
                                  env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        spin_until(executor, lambda: camera.poll() is not None, 30)
        spin_until(executor, lambda: settled(got["diag"][-1]), 5)  # the last frames, then a report
        cam = json.loads(camera.stdout.read().strip().splitlines()[-1])
    finally:
        codes = [stop(p) for p in (camera, node) if p is not None]
        listener.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=ctx)
    assert cam["published"] == FRAMES and cam["subscriber_matched"]
    assert got["scores"], "no score arrived from the node process"
    want = Pipeline.load(bundle).score(image)
    for msg in got["scores"]:
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        assert msg.header.frame_id == "cam_2p" and cam["first_stamp_ns"] <= stamp <= cam["last_stamp_ns"]
        values = {kv.key: kv.value for kv in msg.status[0].values}
        assert float(values["score"]) == pytest.approx(want.score, rel=1e-5)
    report = {kv.key: kv.value for kv in got["diag"][-1].status[0].values}
    assert report["input topic"] == "/cam/image"
    c = counts(got["diag"][-1])
    assert 1 <= c["received"] <= FRAMES and c["failed"] == 0 and settled(got["diag"][-1])
    assert codes[-1] == 0, "the node did not shut down cleanly on SIGINT"


def test_a_classifier_node_process_runs_without_torch(tiny_classifier_bundle, tmp_path, monkeypatch):
    """The node process, with torch unimportable, serves a head-only bundle: each frame's class
    arrives on ``classifier/prediction``, the same as the runtime gives here."""
    rclpy = require("rclpy", reason="rclpy (ros-rclpy wheels, the `ros` extra) is not importable")
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from conftest import TINY_DATA
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl_ros import names
    from ros_support import image_msg
    from torch_blocker import blocked_site

    domain = fresh_domain_id()
    env = ros_env(domain)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    env["PYTHONPATH"] = ":".join(p for p in (str(blocked_site(tmp_path)), env.get("PYTHONPATH")) if p)
    image = open_dataset(TINY_DATA, "test").image(0)
    ctx = Context()
    rclpy.init(context=ctx, domain_id=domain)
    executor = SingleThreadedExecutor(context=ctx)
    listener = rclpy.create_node("listener", context=ctx)
    executor.add_node(listener)
    got: list = []
    listener.create_subscription(DiagnosticArray, "/" + names.PREDICTION, got.append, 10)
    pub = listener.create_publisher(Image, "/cam/image", 10)
    node = subprocess.Popen([python(), "-m", "edgessl_ros.node", "--ros-args", "-p",
                             f"bundle:={tiny_classifier_bundle}", "-p", "input_topic:=/cam/image"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        arrived = spin_until(executor, lambda: got or node.poll() is not None, 60,
                             lambda: pub.publish(image_msg(image, "mono8", "cam_nt", 7)))
    finally:
        code = stop(node)
        output = node.stdout.read()
        listener.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown(context=ctx)
    assert arrived and got, output
    assert "blocked in this test" not in output and code == 0, output
    assert got[-1].status[0].message == Pipeline.load(tiny_classifier_bundle).score(image).class_name
