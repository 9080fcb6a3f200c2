"""The node's ``~/adapt`` service with real rclpy over real DDS (loopback profile, own domain), on a
real bundle (digits, a knn detector): a camera turned brighter is flagged, the operator confirms the
frames are normal, the node adapts and scores the condition as normal from then on; the base bundle
stays byte for byte; a refused call answers why, changes nothing, and the node goes on scoring."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros_support import Probe, image_msg, ros, spin_until, start_node  # noqa: F401 (fixtures)
from test_adapt import brighter

pytestmark = pytest.mark.ros


@pytest.fixture
def bundle(tmp_path) -> Path:
    from runtime_bundle import make_bundle

    return make_bundle(tmp_path / "bundle", "knn", graph_scores=True, fit_record=True)


def _images(split: str, label: int, which: slice) -> list[np.ndarray]:
    from edgessl.edge_runtime.data.datasets import open_dataset

    data = open_dataset("digits", split)
    return [data.image(int(i)) for i in np.flatnonzero(data.labels == label)[which]]


class Camera:
    """The probe as a camera: publishes one frame at a time and waits for the node's verdict on it
    (by the stamp it carries), publishing it again if DDS lost it."""

    def __init__(self, ros) -> None:
        self.executor, self.probe, self.stamp = ros[1], Probe(ros, reliable=True), 0

    def _verdict(self, stamp: int) -> bool | None:
        from edgessl_ros import names

        for msg in self.probe.got.get(names.SCORE_STAMPED, []):
            if msg.header.stamp.nanosec == stamp:
                return {kv.key: kv.value for kv in msg.status[0].values}["is_anomaly"] == "true"
        return None

    def flags(self, images: list[np.ndarray]) -> list[bool]:
        """Whether the node flags each of ``images``, published one after the other."""
        out = []
        for img in images:
            self.stamp += 1
            msg, stamp = image_msg(img, "mono8", "cam", self.stamp), self.stamp
            for _ in range(5):
                self.probe.pub.publish(msg)
                if spin_until(self.executor, lambda: self._verdict(stamp) is not None, 3.0):
                    break
            assert self._verdict(stamp) is not None, f"no verdict on frame {stamp}"
            out.append(self._verdict(stamp))
        return out

    def adapt(self):
        """Call the node's ~/adapt; its Trigger response."""
        from std_srvs.srv import Trigger

        from edgessl_ros import names

        client = self.probe.node.create_client(Trigger, f"/{names.NODE}/adapt")
        return self.probe.call(client, Trigger.Request(), timeout_s=30)


def test_the_node_adapts_to_confirmed_normal_frames_of_a_brighter_camera(ros, bundle):
    from edgessl.edge_runtime.bundle import Bundle

    manifest = (bundle / "manifest.json").read_bytes()
    start_node(ros, bundle, qos_reliability="reliable", qos_depth=20, outputs=("score",))
    camera = Camera(ros)
    assert sum(camera.flags([brighter(img) for img in _images("train", 0, slice(-12, None))])) >= 10  # flagged

    answer = camera.adapt()  # the operator confirms: the brighter camera is normal
    assert answer.success, answer.message
    record = Bundle.load(bundle).adapt.record
    assert record["added"]["images"] >= 12 and len(record["added"]["flagged"]) >= 10
    assert record["added"]["names"][0].startswith("/image@") and record["added"]["data"] == ["/edgessl_node/adapt: /image"]
    flagged = len(record["added"]["flagged"])
    assert answer.message.startswith(f"adapted to the kept frames: {record['added']['images']} images added, "
                                     f"{flagged} of them flagged by the detector before (accepted)")
    assert record["banks"]["knn"] > 60
    assert f"banks knn 60 -> {record['banks']['knn']} rows; thresholds fp32 " in answer.message
    assert (bundle / "manifest.json").read_bytes() == manifest  # the base stays as it was
    again = camera.adapt()  # the frames added are forgotten: never added twice
    assert not again.success and again.message.startswith("0 frames kept since the last adaptation"), again.message

    unseen = [brighter(img) for img in _images("test", 0, slice(None, 15))]
    assert sum(camera.flags(unseen)) <= 3  # the same condition, frames never added: normal now
    assert sum(camera.flags(_images("test", 1, slice(None, 5)))) >= 4  # another digit: still an anomaly


@pytest.mark.parametrize("case", ["too few frames", "delta off", "signed delta required"])
def test_a_refused_call_answers_why_changes_nothing_and_the_node_goes_on(ros, bundle, tmp_path, case):
    from edgessl.cli import main

    params, frames, reason = {
        "too few frames": ({}, 3, "3 frames kept since the last adaptation, fewer than the 5 cross-fitting folds"),
        "delta off": ({"delta": False}, 6, "the node was started with delta:=false"),
        "signed delta required": ({"public_key": str(tmp_path / "key.pub"), "require_signed_delta": True}, 6,
                                  "the node requires a signed adaptation delta (require_signed_delta:=true)"),
    }[case]
    assert main(["keygen", "--out", str(tmp_path / "key")]) == 0
    assert main(["sign", "--bundle", str(bundle), "--key", str(tmp_path / "key")]) == 0
    before = {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()}
    start_node(ros, bundle, qos_reliability="reliable", qos_depth=20, outputs=("score",), **params)
    camera = Camera(ros)
    camera.flags([brighter(img) for img in _images("train", 0, slice(-frames, None))])
    answer = camera.adapt()
    assert not answer.success and answer.message.startswith(reason), answer.message
    assert {p.relative_to(bundle): p.read_bytes() for p in bundle.rglob("*") if p.is_file()} == before
    assert camera.flags(_images("test", 0, slice(None, 2))) == [False, False]  # still scoring, with the base


def test_adapt_buffer_0_offers_no_service(ros, bundle):
    from edgessl_ros import names

    node = start_node(ros, bundle, adapt_buffer=0)
    services = dict(node.get_service_names_and_types_by_node(names.NODE, "/"))
    assert f"/{names.NODE}/set_parameters" in services and f"/{names.NODE}/adapt" not in services


def test_the_managed_node_offers_adapt_while_configured(ros, bundle):
    from edgessl_ros import names
    from edgessl_ros.managed import EdgesslManagedNode

    node = start_node(ros, bundle, node_class=EdgesslManagedNode)

    def offered() -> bool:
        return f"/{names.NODE}/adapt" in dict(node.get_service_names_and_types_by_node(names.NODE, "/"))

    assert not offered()
    node.trigger_configure()
    assert spin_until(ros[1], offered)
    answer = Camera(ros).adapt()  # inactive: nothing scored, so nothing to adapt to
    assert not answer.success and answer.message.startswith("0 frames kept since the last adaptation")
    node.trigger_cleanup()
    assert spin_until(ros[1], lambda: not offered())
