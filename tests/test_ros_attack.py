"""The node under attack, over real DDS: compressed decompression bombs (a JPEG header of a few
hundred bytes declaring 30000 x 30000 pixels) beside good frames, measured in the node's own
process, and corrupt JPEGs counted as failures, not scored."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import cv2
import pytest

from bombs import jpeg_bomb
from ros_support import Probe, patch_bundle, python, ros, sample_image, spin_until, start_node  # noqa: F401 (fixtures)
from test_ros_image import corrupt_jpegs

pytestmark = pytest.mark.ros
BOMB_COST_MB = 100


def peak_rss_mb(pid: int) -> float:
    """The peak resident memory of process ``pid`` (``VmHWM``) in MB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return int(next(line.split()[1] for line in status if line.startswith("VmHWM:"))) / 1024


def compressed(data: bytes):
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(format="jpeg", data=data)


def test_compressed_bombs_beside_good_frames_cost_little_and_warn(ros, patch_bundle):
    from edgessl_ros import names

    good = compressed(cv2.imencode(".jpg", sample_image(3, 48, 64))[1].tobytes())
    bomb = compressed(jpeg_bomb())  # 333 bytes declaring 30000 x 30000 grey pixels: 900 MB decoded
    node = subprocess.Popen([python(), "-m", "edgessl_ros.node", "--ros-args", "-p", f"bundle:={patch_bundle}",
                             "-p", "compressed:=true", "-p", "outputs:=[score]", "-p", "diagnostics_period_s:=0.5"],
                            env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:  # the ``ros`` fixture's environment: its domain, the loopback profile
        probe = Probe(ros, compressed=True)
        assert spin_until(ros[1], lambda: len(probe.got.get(names.SCORE, [])) >= 5 or node.poll() is not None, 60,
                          lambda: probe.pub.publish(good)), "the node scored no good frame"
        warm_mb = peak_rss_mb(node.pid)
        sent = {"bombs": 0, "good": 0}

        def bomb_or_good() -> None:  # a bomb, a good frame, a bomb, ... as fast as the test spins
            kind = "bombs" if sent["bombs"] == sent["good"] else "good"
            sent[kind] += 1
            probe.pub.publish(bomb if kind == "bombs" else good)

        scored_before = len(probe.got[names.SCORE])
        spin_until(ros[1], lambda: node.poll() is not None, 4, bomb_or_good)
        bombs_mb = peak_rss_mb(node.pid)
        assert node.poll() is None, node.stdout.read()
        diag = probe.latest_diagnostics()
    finally:
        node.terminate()
        node.wait(timeout=20)
    print(f"node peak RSS: {warm_mb:.0f} MB warm, {bombs_mb:.0f} MB after {sent['bombs']} bombs "
          f"({diag['frames failed']} refused, {diag['frames processed']} good frames scored)")
    assert len(probe.got[names.SCORE]) - scored_before >= 10  # the good frames went on being scored
    assert bombs_mb - warm_mb < BOMB_COST_MB, f"{warm_mb:.0f} MB -> {bombs_mb:.0f} MB"
    assert diag["level"] == 1 and int(diag["frames failed"]) >= 10  # bombs refused, not dropped unseen
    assert "30000x30000 = 900 megapixels, over the limit" in diag["last error"] and "not decoded" in diag["last error"]


@pytest.mark.parametrize("kind, error", [("truncated", "not a readable image"),
                                         ("bit-flipped", "corrupt JPEG (libjpeg: Corrupt JPEG data")])
def test_a_corrupt_jpeg_is_counted_as_a_failure_not_scored(ros, patch_bundle, kind, error):
    from edgessl_ros import names

    start_node(ros, patch_bundle, compressed=True, outputs=("score",), diagnostics_period_s=0.2)
    probe = Probe(ros, compressed=True)
    bad = compressed(corrupt_jpegs()[kind])
    assert spin_until(ros[1], lambda: int(probe.latest_diagnostics().get("frames failed", 0)) >= 3, 20,
                      lambda: probe.pub.publish(bad))
    diag = probe.latest_diagnostics()
    assert diag["level"] == 1 and error in diag["last error"] and diag["last error"].startswith("convert: ")
    assert diag["frames processed"] == "0" and names.SCORE not in probe.got
