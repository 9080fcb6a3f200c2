"""The ROS 2 node under several cameras: one node scoring them all against one node per camera.

    .venv/bin/python benchmarks/bench_ros.py [--duration 25] [--cameras 2] [--width 1280 --height 720]
                                             [--rate 30] [--bundle BUNDLE | --work /tmp/edgessl_bench_ros]
                                             [--precision int8] [--reliable]

Without --bundle, builds (once, in --work) a bundle at the default model size (``timing_bundle.py``:
32 px RGB, random-init resnet18, fit's default detector for the default method, fitted on the
digits' class 0, INT8 for the CPU; where calibration refuses it runs fp32 and says so). Then, over the project's loopback Fast DDS
profile on a private domain, for each configuration in turn -- one node with ``input_topics`` (one
model, frames waiting together scored in one batch) and one node per camera (``input_topic``, each
in its camera's namespace) -- it starts the node process(es), waits until every camera is reported
on /diagnostics, runs one test-pattern camera process per camera (``/camK/image``) for --duration
seconds, lets the nodes settle, and reads the nodes' /diagnostics and every stamped score. It prints
one table: frames published / received / lost in transport (best effort) / processed / dropped by
newest-wins / failed, stamp-to-score latency (as received by this process, all cameras pooled, and
the nodes' own worst camera), and node CPU (user+system time of the node processes over the
publishing window, 100% = one core) per camera and per processed frame (a loaded machine makes the
nodes drop more frames, so the second figure compares the work itself), with the ratios of the two
configurations.
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
from timing_bundle import timing_bundle

REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "ros2_node" / "config" / "fastdds_loopback.xml"
CONFIGS = ("one node", "one node per camera")


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
    """This process's view: the nodes' /diagnostics per camera and the arrival of every stamped score."""

    def __init__(self, domain: int, cameras: list[str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray

        from edgessl_ros import names

        rclpy.init(domain_id=domain)
        self.rclpy = rclpy
        self.node = rclpy.create_node("bench_listener")
        self.node.create_subscription(DiagnosticArray, names.DIAGNOSTICS, self._on_diag, 10)
        for camera in cameras:
            self.node.create_subscription(DiagnosticArray, names.camera_output_topic(camera, names.SCORE_STAMPED),
                                          self._on_score, 100)
        self.reset()

    def reset(self) -> None:
        self.diag: dict[str, dict[str, str]] = {}  # input topic -> newest status values
        self.latencies: list[float] = []

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            self.diag[values.get("input topic", status.name)] = values

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


def node_commands(config: str, cameras: list[str], bundle: Path, precision: str, reliability: str) -> list[list[str]]:
    common = ["-p", f"bundle:={bundle}", "-p", f"precision:={precision}", "-p", "backend:=ort-cpu",
              "-p", f"qos_reliability:={reliability}", "-p", "outputs:=[score]"]
    node = [sys.executable, "-m", "edgessl_ros.node", "--ros-args"]
    if config == "one node":
        return [node + common + ["-p", f"input_topics:=[{', '.join(cameras)}]"]]
    return [node + common + ["-r", f"__ns:={c.rsplit('/', 1)[0]}", "-p", f"input_topic:={c}"] for c in cameras]


def run_config(config: str, args, listener: Listener, cameras: list[str], bundle: Path, precision: str,
               env: dict[str, str]) -> dict:
    """One configuration: node(s) up, cameras for --duration s, settle; the figures of the table."""
    reliability = "reliable" if args.reliable else "best_effort"
    listener.reset()
    nodes = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for cmd in node_commands(config, cameras, bundle, precision, reliability)]
    cams: list[subprocess.Popen] = []
    try:
        listener.spin_for(90, until=lambda: set(cameras) <= set(listener.diag) or any(n.poll() is not None for n in nodes))
        if not set(cameras) <= set(listener.diag):
            raise SystemExit(f"{config}: the node did not start:\n" +
                             "\n".join(n.stdout.read() for n in nodes if n.poll() is not None))
        cpu0, t0 = sum(cpu_seconds(n.pid) for n in nodes), time.monotonic()
        cams = [subprocess.Popen([sys.executable, "-m", "edgessl_ros.camera", "--topic", c, "--width", str(args.width),
                                  "--height", str(args.height), "--encoding", "rgb8", "--rate", str(args.rate),
                                  "--duration", str(args.duration), "--frame-id", c.split("/")[1],
                                  *(["--reliable"] if args.reliable else [])], env=env, stdout=subprocess.PIPE, text=True)
                for c in cameras]
        listener.spin_for(args.duration + 60, until=lambda: all(c.poll() is not None for c in cams))
        cpu1, t1 = sum(cpu_seconds(n.pid) for n in nodes), time.monotonic()
        listener.spin_for(3.0)  # the last frames and a final report
        published = sum(json.loads(c.stdout.read().strip().splitlines()[-1])["published"] for c in cams)
    finally:
        for proc in (*cams, *nodes):
            stop(proc)
    d = [listener.diag[c] for c in cameras]
    count = lambda key: sum(int(v[f"frames {key}"]) for v in d)  # noqa: E731
    node_p = lambda key: worst(d, key)  # noqa: E731
    lat = np.percentile(listener.latencies, [50, 99]) if listener.latencies else [float("nan")] * 2
    cpu = 100 * (cpu1 - cpu0) / (t1 - t0)
    processed = count("processed")
    return {"published": published, "received": count("received"), "processed": processed,
            "dropped": count("dropped"), "failed": count("failed"), "p50": lat[0], "p99": lat[1],
            "node p50": node_p("latency p50 (ms)"), "node p99": node_p("latency p99 (ms)"),
            "processing p50": node_p("processing p50 (ms)"), "batch": node_p("batch size (mean)"), "cpu": cpu, "cpu per camera": cpu / len(cameras),
            "cpu ms per frame": 1e3 * (cpu1 - cpu0) / max(processed, 1),
            "precision": d[0]["precision"], "bundle hash": d[0]["bundle hash"][:12]}


def worst(reports: list[dict[str, str]], key: str) -> float:
    """The largest of the cameras' figures ``key`` (NaN when none has one yet)."""
    values = [float(r[key]) for r in reports if r[key] != "n/a"]
    return max(values) if values else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", help="bundle to use (default: build one in --work)")
    ap.add_argument("--work", default="/tmp/edgessl_bench_ros")
    ap.add_argument("--precision", default="int8", choices=("fp32", "int8"))
    ap.add_argument("--duration", type=float, default=25.0, help="seconds of camera frames per configuration")
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--reliable", action="store_true", help="reliable QoS on the cameras and the nodes' inputs")
    args = ap.parse_args()

    if args.bundle:
        bundle = Path(args.bundle)
    else:
        from edgessl.train.config import PretrainConfig

        bundle, note = timing_bundle(Path(args.work), PretrainConfig().image_size, 3)
        if note:
            print(f"note: {note}", file=sys.stderr)
    precision = args.precision
    if precision == "int8" and "int8-cpu" not in json.loads((bundle / "manifest.json").read_text())["precisions"]:
        print("note: the bundle has no int8-cpu model: running fp32", file=sys.stderr)
        precision = "fp32"
    from edgessl_ros.names import fastdds_profile_env

    domain = 90 + os.getpid() % 10
    env = {**os.environ, **fastdds_profile_env(str(PROFILE)), "ROS_DOMAIN_ID": str(domain),
           "RMW_IMPLEMENTATION": "rmw_fastrtps_cpp", "PYTHONUNBUFFERED": "1"}
    os.environ.update(env)
    cameras = [f"/cam{k}/image" for k in range(args.cameras)]
    listener = Listener(domain, cameras)
    try:
        results = {config: run_config(config, args, listener, cameras, bundle, precision, env) for config in CONFIGS}
    finally:
        listener.close()

    one, per = (results[c] for c in CONFIGS)
    lost = lambda r: f"{r['published'] - r['received']} ({100 * (r['published'] - r['received']) / max(r['published'], 1):.1f}%)"  # noqa: E731
    rows = [
        ("frames published (cameras)", lambda r: r["published"]),
        ("frames received (nodes)", lambda r: r["received"]),
        ("lost in transport", lost),
        ("frames processed", lambda r: r["processed"]),
        ("frames dropped (newest wins)", lambda r: r["dropped"]),
        ("frames failed", lambda r: r["failed"]),
        ("stamp->score p50 / p99 ms (received here, all cameras)", lambda r: f"{r['p50']:.1f} / {r['p99']:.1f}"),
        ("stamp->score p50 / p99 ms (node, worst camera)", lambda r: f"{r['node p50']:.1f} / {r['node p99']:.1f}"),
        ("processing p50 ms (node, worst camera)", lambda r: f"{r['processing p50']:.1f}"),
        ("frames per inference batch (mean)", lambda r: f"{r['batch']:.2f}"),
        ("node CPU, all processes (100% = one core)", lambda r: f"{r['cpu']:.0f}%"),
        ("node CPU per camera", lambda r: f"{r['cpu per camera']:.0f}%"),
        ("node CPU ms per processed frame", lambda r: f"{r['cpu ms per frame']:.1f}"),
    ]
    print(f"bundle {bundle} ({one['precision']} on ort-cpu, {one['bundle hash']}); {args.cameras} cameras "
          f"{args.width}x{args.height} rgb8 at {args.rate:g} Hz for {args.duration:g} s each, "
          f"{'reliable' if args.reliable else 'best_effort'} QoS")
    width = max(len(k) for k, _ in rows)
    print(f"{'':<{width}}  {CONFIGS[0]:>22}  {CONFIGS[1]:>22}")
    for key, cell in rows:
        print(f"{key:<{width}}  {str(cell(one)):>22}  {str(cell(per)):>22}")
    print(f"one node / one node per camera: CPU per camera {one['cpu per camera'] / per['cpu per camera']:.2f}, "
          f"CPU per processed frame {one['cpu ms per frame'] / per['cpu ms per frame']:.2f}")


if __name__ == "__main__":
    main()
