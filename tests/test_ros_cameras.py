"""Several cameras in one node, over real DDS: one model, each camera's outputs under its own
namespace with its own header and score, one /diagnostics status per camera that says which camera
stopped; bad camera lists refused at start (the process exits 2 with one line)."""

from __future__ import annotations

import subprocess

import pytest

from requires import require
from ros_support import (Probe, fresh_domain_id, image_msg, patch_bundle, python, ros,  # noqa: F401 (fixtures)
                         ros_env, sample_image, spin_until, start_node)

pytestmark = pytest.mark.ros
CAMERAS = ("/cam0/image", "/cam1/image")


def test_two_cameras_one_node_outputs_per_camera_and_diagnostics_say_which_stopped(ros, patch_bundle):
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl_ros import names

    node = start_node(ros, patch_bundle, input_topics=CAMERAS, diagnostics_period_s=0.2, stale_after_s=0.6,
                      outputs=("score", "heatmap"))
    probe = Probe(ros, cameras=CAMERAS, prefixes=("/cam0/", "/cam1/"))
    images = {"/cam0/image": sample_image(3, 30, 40), "/cam1/image": 255 - sample_image(3, 24, 20)}
    msgs = {c: image_msg(img, "rgb8", c.split("/")[1], 1_000 + i) for i, (c, img) in enumerate(images.items())}

    def publish_both():
        for camera, msg in msgs.items():
            probe.pubs[camera].publish(msg)

    stamped = {c: f"/cam{i}/{names.SCORE_STAMPED}" for i, c in enumerate(CAMERAS)}
    wanted = [*stamped.values(), *(f"/cam{i}/{names.HEATMAP}" for i in range(2))]
    assert spin_until(ros[1], lambda: all(t in probe.got for t in wanted), 15, publish_both)
    pipe = Pipeline.load(patch_bundle)
    for i, (camera, topic) in enumerate(stamped.items()):
        out = probe.got[topic][-1]
        assert out.header.frame_id == f"cam{i}" and out.header.stamp.nanosec == 1_000 + i
        assert out.status[0].name == f"/edgessl_node ({camera}): anomaly score"
        values = {kv.key: kv.value for kv in out.status[0].values}
        assert float(values["score"]) == pytest.approx(pipe.score(images[camera]).score, rel=1e-5)
        heat = probe.got[f"/cam{i}/{names.HEATMAP}"][-1]
        assert (heat.height, heat.width) == images[camera].shape[:2]
    assert names.SCORE not in probe.got and len(node.scoring.cameras) == 2  # nothing in the node's own namespace

    status = {c: f"/edgessl_node ({c}): status" for c in CAMERAS}
    # cam1 stops; cam0 goes on: the report names cam1 as stalled and cam0 as fine
    def cam1_stalled_while_cam0_goes_on() -> bool:
        cam0, cam1 = (probe.latest_diagnostics(status[c]) for c in CAMERAS)
        return "stalled" in cam1.get("message", "") and \
            int(cam0.get("frames processed", 0)) > int(cam1.get("frames processed", 0))

    assert spin_until(ros[1], cam1_stalled_while_cam0_goes_on, 15,
                      lambda: probe.pubs["/cam0/image"].publish(msgs["/cam0/image"]))
    cam0, cam1 = (probe.latest_diagnostics(status[c]) for c in CAMERAS)
    assert cam1["level"] == 1 and "no frame on /cam1/image" in cam1["message"] and cam1["input topic"] == "/cam1/image"
    # cam0 goes on (published at every spin, hundreds per second: its report may warn of drops, never a stall)
    assert "stalled" not in cam0["message"] and int(cam0["frames processed"]) > int(cam1["frames processed"]) > 0


def test_topics_that_resolve_to_one_are_refused(ros, patch_bundle):
    from edgessl.edge_runtime.errors import EdgesslError

    with pytest.raises(EdgesslError, match="names /image more than once"):
        start_node(ros, patch_bundle, input_topics=("image", "/image"))
    with pytest.raises(EdgesslError, match="several topics in namespace /cam,"):
        start_node(ros, patch_bundle, input_topics=("/cam/left", "/cam/right"))
    with pytest.raises(EdgesslError, match="several topics in namespace /,"):  # both resolve into the root
        start_node(ros, patch_bundle, input_topics=("image", "depth"))


@pytest.mark.parametrize("value, reason", [
    ("[]", "'input_topics' must name at least one camera topic"),
    ("[/cam0/image, /cam0/image]", "'input_topics' names /cam0/image more than once"),
])
def test_node_process_exits_2_with_one_line_for_a_bad_camera_list(tmp_path, value, reason):
    require("rclpy", reason="rclpy (ros-rclpy wheels, the `ros` extra) is not importable")
    proc = subprocess.run([python(), "-m", "edgessl_ros.node", "--ros-args", "-p", f"bundle:={tmp_path}",
                           "-p", f"input_topics:={value}"],
                          env=ros_env(fresh_domain_id()), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgessl_node: error: ") and reason in lines[0]
