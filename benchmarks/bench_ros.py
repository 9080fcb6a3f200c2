"""The ROS 2 node under a camera: 640x480 rgb8 at 30 Hz from one process to the node in another.

    .venv/bin/python benchmarks/bench_ros.py [--duration 60] [--bundle BUNDLE | --work /tmp/edgessl_bench_ros]
                                             [--precision int8] [--rate 30] [--reliable] [--threads N]

Without --bundle, builds (once, in --work) a resnet18 bundle at 64 px RGB (random init: enough for
timing) with a knn detector fitted on the digits' class 0, and calibrates INT8 for the CPU when the
calibration step is available (otherwise it runs fp32 and says so). Then, over the project's
loopback Fast DDS profile on a private domain: starts the node (its own process), waits until it
reports, runs the test-pattern camera process for --duration seconds, lets the node settle, and
prints one table: frames published / received / processed / dropped (newest wins) / failed, lost in
transport (best effort), latency from the image stamp to the score (the node's own figure over its
last 1000 frames, and as received by this process over all frames), processing time, and CPU use of
the node process (user+system time over the publishing window, 100% = one core).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "ros2_node" / "config" / "fastdds_loopback.xml"


def build_bundle(work: Path) -> Path:
    """resnet18, 64 px RGB, random init, knn on digits class 0, exported; INT8 attempted."""
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.backbones import BackboneConfig, build_backbone
    from edgessl.train.checkpoint import save_model
    from edgessl.train.fit import FitConfig, fit_run

    run, bundle = work / "run", work / "bundle"
    if not (bundle / "manifest.json").is_file():
        spec = PreprocessSpec(image_size=64, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
        save_model(run, build_backbone(BackboneConfig("resnet18", 3, 64)), spec, {"method": "random-init", "data": "digits"})
        fit_run(FitConfig(run=str(run), data="digits", normal_label="0", detector="knn", target_fpr=0.15, device="cpu",
                          batch_size=32))
        export_bundle(ExportConfig(run=str(run), out=str(bundle), verify_images=16, force=True))
    if "int8-cpu" not in json.loads((bundle / "manifest.json").read_text())["precisions"]:
        from edgessl.demo import _calibrate

        note = _calibrate(bundle, "digits")
        if note:
            print(f"note: {note}", file=sys.stderr)
    return bundle


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Listener:
    """This process's view: the node's /diagnostics and the arrival of every stamped score."""

    def __init__(self, domain: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        from edgessl_ros import names

        rclpy.init(domain_id=domain)
        self.rclpy = rclpy
        self.node = rclpy.create_node("bench_listener")
        self.diag: dict[str, str] = {}
        self.latencies: list[float] = []
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 10)
        self.node.create_subscription(DiagnosticArray, "/" + names.SCORE_STAMPED, self._on_score, 100)

    def _on_diag(self, msg) -> None:
        self.diag = {kv.key: kv.value for kv in msg.status[0].values}

    def _on_score(self, msg) -> None:
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.latencies.append((time.time() - stamp) * 1e3)

    def spin_for(self, seconds: float, until=lambda: False) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until():
            self.rclpy.spin_once(self.node, timeout_sec=0.05)

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="bundle to use (default: build one in --work)")
    ap.add_argument("--work", default="/tmp/edgessl_bench_ros")
    ap.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of camera frames")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--reliable", action="store_true", help="reliable QoS on the camera and the node's input")
    ap.add_argument("--threads", type=int, default=0, help="the node's ONNX Runtime threads (0: one per core)")
    args = ap.parse_args()

    bundle = Path(args.bundle) if args.bundle else build_bundle(Path(args.work))
    precision = args.precision
    if precision == "int8" and "int8-cpu" not in json.loads((bundle / "manifest.json").read_text())["precisions"]:
        print("note: the bundle has no int8-cpu model: running fp32", file=sys.stderr)
        precision = "fp32"
    domain = 90 + os.getpid() % 10
    from edgessl_ros.names import fastdds_profile_env

    env = {**os.environ, **fastdds_profile_env(str(PROFILE)), "ROS_DOMAIN_ID": str(domain),
           "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    reliability = "reliable" if args.reliable else "best_effort"
    node_cmd = [sys.executable, "-m", "edgessl_ros.node", "--ros-args", "-p", f"bundle:={bundle}",
                "-p", f"precision:={precision}", "-p", "backend:=ort-cpu", "-p", "input_topic:=/bench/image",
                "-p", f"qos_reliability:={reliability}", "-p", f"threads:={args.threads}"]
    cam_cmd = [sys.executable, "-m", "edgessl_ros.camera", "--topic", "/bench/image", "--width", "640",
               "--height", "480", "--encoding", "rgb8", "--rate", str(args.rate), "--duration", str(args.duration)]
    cam_cmd += ["--reliable"] if args.reliable else []
    listener = Listener(domain)
    node = subprocess.Popen(node_cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    camera = None
    try:
        listener.spin_for(60, until=lambda: bool(listener.diag) or node.poll() is not None)
        if node.poll() is not None or not listener.diag:
            raise SystemExit(f"the node did not start:\n{node.stdout.read() if node.poll() is not None else ''}")
        cpu0, t0 = cpu_seconds(node.pid), time.monotonic()
        camera = subprocess.Popen(cam_cmd, env=env, stdout=subprocess.PIPE, text=True)
        listener.spin_for(args.duration + 30, until=lambda: camera.poll() is not None)
        cpu1, t1 = cpu_seconds(node.pid), time.monotonic()
        listener.spin_for(3.0)  # the last frames and a final report
        cam = json.loads(camera.stdout.read().strip().splitlines()[-1])
    finally:
        for proc in (camera, node):
            if proc is not None:
                stop(proc)
        listener.close()
    d = listener.diag
    published, received = cam["published"], int(d["frames received"])
    lat = np.percentile(listener.latencies, [50, 99]) if listener.latencies else [float("nan")] * 2
    rows = [
        ("bundle", f"{bundle} ({d['precision']} on {d['backend']}, {d['bundle hash'][:12]})"),
        ("camera", f"640x480 rgb8 at {args.rate:g} Hz for {args.duration:g} s, {reliability} QoS"),
        ("frames published (camera)", published),
        ("frames received (node)", received),
        ("lost in transport", f"{published - received} ({100 * (published - received) / max(published, 1):.1f}%)"),
        ("frames processed", d["frames processed"]),
        ("frames dropped (newest wins)", d["frames dropped"]),
        ("frames failed", d["frames failed"]),
        ("latency stamp->score p50 / p99 ms (node, last 1000)", f"{d['latency p50 (ms)']} / {d['latency p99 (ms)']}"),
        ("latency stamp->score received p50 / p99 ms (other process)", f"{lat[0]:.1f} / {lat[1]:.1f}"),
        ("processing p50 / p99 ms (preprocess+inference+score)", f"{d['processing p50 (ms)']} / {d['processing p99 (ms)']}"),
        ("node CPU (100% = one core)", f"{100 * (cpu1 - cpu0) / (t1 - t0):.0f}%"),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
