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

        ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
               "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP}
        return self.request(Transition(id=ids[label]))

    def request(self, transition) -> bool:
        """Send ``transition`` (by id, or by label when it has one) to ``change_state``; its success."""
        from lifecycle_msgs.srv import ChangeState

        return self.probe.call(self.change, ChangeState.Request(transition=transition)).success

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


def test_configure_refuses_a_bundle_failing_its_checks_and_stays_unconfigured(ros, patch_bundle, tmp_path, capfd):
    from edgessl_ros import names

    tampered = tmp_path / "tampered"
    shutil.copytree(patch_bundle, tampered)
    (tampered / "model.onnx").write_bytes((tampered / "model.onnx").read_bytes() + b"\0")
    node = managed(ros, tampered)
    manager = Manager(Probe(ros), names.NODE)
    assert not manager.transition("configure")
    assert manager.state() == "unconfigured" and node.scoring is None
    log = capfd.readouterr().err  # the node's log: why configure failed
    assert "configure refused: " in log and "model.onnx does not match its sha256" in log
    shutil.copy(patch_bundle / "model.onnx", tampered / "model.onnx")  # repaired: configure now succeeds
    assert manager.transition("configure") and manager.state() == "inactive"


# Every transition of lifecycle_msgs/Transition a client can name: by id (the primary ones, the
# internal on_* results, one that does not exist) and by label (and a label that names none).
PRIMARY = {"unconfigured": {1: "configure", 5: "shutdown"}, "inactive": {2: "cleanup", 3: "activate", 6: "shutdown"},
           "active": {4: "deactivate", 7: "shutdown"}, "finalized": {}}
GOALS = {"configure": "inactive", "cleanup": "unconfigured", "activate": "active", "deactivate": "inactive"}
BACK = {"configure": "cleanup", "cleanup": "configure", "activate": "deactivate", "deactivate": "activate"}


def every_request() -> list:
    from lifecycle_msgs.msg import Transition

    ids = sorted({getattr(Transition, k) for k in dir(Transition) if k.startswith("TRANSITION_")} | {255})
    labels = ("create", "configure", "cleanup", "activate", "deactivate", "shutdown", "destroy",
              "unconfigured_shutdown", "no_such_transition")
    return [Transition(id=i) for i in ids] + [Transition(label=label) for label in labels]


def test_every_request_by_id_or_label_in_every_state_is_answered_and_the_node_survives(ros, patch_bundle):
    """A request the state has no transition for is refused and changes nothing; one it has is
    applied (and undone, to go on testing in that state). Shutdown, which cannot be undone, is
    applied once, from active by id, into finalized, where every request is refused. A callback that
    raised would fail the test in ``spin_once``."""
    from lifecycle_msgs.msg import Transition

    from edgessl_ros import names

    node = managed(ros, patch_bundle)
    manager = Manager(Probe(ros), names.NODE)
    answered = 0
    for state, way_in in (("unconfigured", None), ("inactive", Transition(label="configure")),
                          ("active", Transition(label="activate")), ("finalized", Transition(id=7))):
        if way_in is not None:
            assert manager.request(way_in) and manager.state() == state
        for request in every_request():
            named = request.label or PRIMARY[state].get(request.id)  # what this state would do with it
            available = named in PRIMARY[state].values()
            if available and named == "shutdown":
                continue  # the way into finalized, last
            success = manager.request(request)
            answered += 1
            if not available:
                assert not success and manager.state() == state, (state, request)
                continue
            assert success and manager.state() == GOALS[named], (state, request)
            assert manager.request(Transition(label=BACK[named])) and manager.state() == state
    assert answered == 4 * len(every_request()) - 6  # all but the 6 shutdowns (by id and label) of 3 states
    assert manager.state() == "finalized"
    assert node.scoring is None  # shutdown released the model
