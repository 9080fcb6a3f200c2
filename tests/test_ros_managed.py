"""The managed (lifecycle) node over real DDS: a test client drives it through ``change_state``;
configure loads and verifies the bundle (a refused bundle fails the transition and leaves the node
unconfigured), activate starts scoring, deactivate stops publishing, cleanup releases the model."""

from __future__ import annotations

import shutil

import pytest

from ros_support import (Probe, image_msg, patch_bundle, ros, sample_image, spin_until,  # noqa: F401 (fixtures)
                         start_node)

pytestmark = pytest.mark.ros


class Manager:
    """A lifecycle manager's view of the node: ``change_state`` and ``get_state`` over its services."""

    def __init__(self, probe: Probe, node_name: str) -> None:
        from lifecycle_msgs.srv import ChangeState, GetState

        self.probe = probe
        self.change = probe.node.create_client(ChangeState, f"/{node_name}/change_state")
        self.get = probe.node.create_client(GetState, f"/{node_name}/get_state")

    def transition(self, label: str) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
        return self.probe.call(self.change, ChangeState.Request(transition=Transition(id=ids[label]))).success

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        return self.probe.call(self.get, GetState.Request()).current_state.label


def managed(ros, bundle, **params):
    from edgessl_ros.managed import EdgesslManagedNode

    return start_node(ros, bundle, node_class=EdgesslManagedNode, outputs=("score",), diagnostics_period_s=0.2,
                      **params)


def scores_while_publishing(ros, probe: Probe, seconds: float) -> int:
    """How many scores arrive while frames are published for ``seconds``."""
    from edgessl_ros import names

    before = len(probe.got.get(names.SCORE, []))
    msg = image_msg(sample_image(1), "mono8", "cam", 3)
    spin_until(ros[1], lambda: False, seconds, lambda: probe.pub.publish(msg))
    return len(probe.got.get(names.SCORE, [])) - before


def test_transitions_over_dds_start_and_stop_scoring(ros, patch_bundle):
    from edgessl_ros import names

    node = managed(ros, patch_bundle)
    probe = Probe(ros)
    manager = Manager(probe, names.NODE)
    assert manager.state() == "unconfigured" and node.scoring is None  # nothing loaded before configure
    assert manager.transition("configure") and manager.state() == "inactive"
    assert node.scoring.pipeline.bundle.hash  # loaded and verified
    assert scores_while_publishing(ros, probe, 1.0) == 0  # inactive: not scoring
    assert manager.transition("activate") and manager.state() == "active"
    msg = image_msg(sample_image(1), "mono8", "cam", 4)
    assert spin_until(ros[1], lambda: names.SCORE in probe.got, 15, lambda: probe.pub.publish(msg))
    assert manager.transition("deactivate") and manager.state() == "inactive"
    spin_until(ros[1], lambda: False, 0.3)  # outputs already on the wire
    assert scores_while_publishing(ros, probe, 1.0) == 0  # deactivated: nothing is published
    assert manager.transition("activate")
    assert spin_until(ros[1], lambda: scores_while_publishing(ros, probe, 0.3) > 0, 15)  # scoring again
    assert manager.transition("deactivate") and manager.transition("cleanup")
    assert manager.state() == "unconfigured" and node.scoring is None  # the model is released


def test_configure_refuses_a_bundle_failing_its_checks_and_stays_unconfigured(ros, patch_bundle, tmp_path):
    from edgessl_ros import names

    tampered = tmp_path / "tampered"
    shutil.copytree(patch_bundle, tampered)
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes() + b"\0")
    node = managed(ros, tampered)
    manager = Manager(Probe(ros), names.NODE)
    assert not manager.transition("configure")
    assert manager.state() == "unconfigured" and node.scoring is None
    shutil.copy(patch_bundle / "model.onnx", tampered / "model.onnx")  # repaired: configure now succeeds
    assert manager.transition("configure") and manager.state() == "inactive"
