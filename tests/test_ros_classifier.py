"""The ROS node with a classifier bundle, over real DDS: a head-only bundle publishes each frame's
class and probabilities on ``classifier/prediction`` with the input header (WARN for the positive
class), its features, and no anomaly topic; a bad frame is counted and the node goes on; a bundle
with a detector and a head publishes both the anomaly topics and the prediction."""

from __future__ import annotations

import pytest

from requires import require
from ros_support import Probe, image_msg, ros, spin_until, start_node  # noqa: F401 (fixtures)

require("torch")  # the classifier bundles are exported from a fine-tuned run (conftest)

from conftest import TINY_DATA, TINY_POSITIVE  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.pipeline import Pipeline  # noqa: E402

pytestmark = pytest.mark.ros


def _prediction(probe: Probe, stamp_ns: int):
    """The newest prediction for the frame stamped ``stamp_ns`` (None before one arrives)."""
    from edgessl_ros import names

    for msg in reversed(probe.got.get(names.PREDICTION, [])):
        if msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp_ns:
            return msg
    return None


def _published(probe: Probe, img, stamp_ns: int):
    """Publish ``img`` stamped ``stamp_ns`` until its prediction arrives; that prediction."""
    msg = image_msg(img, "mono8", "cam_test", stamp_ns)
    assert spin_until(probe.executor, lambda: _prediction(probe, stamp_ns) is not None, 15,
                      lambda: probe.pub.publish(msg))
    return _prediction(probe, stamp_ns)


def test_a_head_only_bundle_publishes_the_class_with_the_input_header(ros, tiny_classifier_bundle):
    from diagnostic_msgs.msg import DiagnosticStatus

    from edgessl_ros import names

    node = start_node(ros, tiny_classifier_bundle, diagnostics_period_s=0.2)
    probe = Probe(ros)
    pipe = Pipeline.load(tiny_classifier_bundle)
    test = open_dataset(TINY_DATA, "test")
    images = [test.image(i) for i in range(40)]
    classes = [r.class_name for r in pipe.score_batch(images)]
    positive = images[classes.index(TINY_POSITIVE)]
    other_index = next(i for i, c in enumerate(classes) if c != TINY_POSITIVE)
    other = images[other_index]
    for stamp, img in ((1_700_000_000_123_456_789, positive), (1_700_000_001_000_000_007, other)):
        want = pipe.score(img)
        prediction = _published(probe, img, stamp)
        assert prediction.header.frame_id == "cam_test"
        status = prediction.status[0]
        values = {kv.key: kv.value for kv in status.values}
        assert status.message == values["class"] == want.class_name
        assert status.name == "/edgessl_node: class"
        assert status.level == (DiagnosticStatus.WARN if want.class_name == TINY_POSITIVE else DiagnosticStatus.OK)
        probs = {c: float(values[f"p({c})"]) for c in pipe.classes}
        assert probs == pytest.approx(want.probabilities, abs=1e-5)
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-4)
        assert float(values["probability"]) == pytest.approx(max(want.probabilities.values()), abs=1e-5)
    assert spin_until(ros[1], lambda: names.FEATURES_STAMPED in probe.got)  # features still publish
    assert probe.got[names.FEATURES_STAMPED][-1].header.frame_id == "cam_test"
    advertised = {t for t, _ in probe.node.get_publisher_names_and_types_by_node(names.NODE, "/")}
    assert f"/{names.PREDICTION}" in advertised and f"/{names.FEATURES}" in advertised
    assert not advertised & {f"/{t}" for t in (names.SCORE, names.SCORE_STAMPED, names.DECISION, names.HEATMAP)}

    bad = image_msg(positive, "mono8", "cam_test", 5)
    bad.step = 3  # smaller than a row
    assert spin_until(ros[1], lambda: probe.latest_diagnostics().get("frames failed", "0") != "0", 15,
                      lambda: probe.pub.publish(bad))
    assert "step 3 is smaller than" in probe.latest_diagnostics()["last error"]
    assert probe.latest_diagnostics()["drift"] == "not watched"  # no detector, no scores to watch
    assert _published(probe, other, 1_700_000_002_000_000_000).status[0].message == classes[other_index]
    assert node.scoring.scorer.running


def test_a_head_only_bundle_refuses_outputs_it_cannot_give(ros, tiny_classifier_bundle):
    from edgessl.edge_runtime.errors import EdgesslError

    with pytest.raises(EdgesslError, match=r"gives none of \['score', 'heatmap'\]; it gives \['features', 'class'\]"):
        start_node(ros, tiny_classifier_bundle, outputs=("score", "heatmap"))


def test_a_bundle_with_a_detector_and_a_head_publishes_both(ros, tiny_detector_classifier_bundle):
    from diagnostic_msgs.msg import DiagnosticStatus

    from edgessl_ros import names

    start_node(ros, tiny_detector_classifier_bundle)
    probe = Probe(ros)
    img = open_dataset(TINY_DATA, "test").image(0)
    want = Pipeline.load(tiny_detector_classifier_bundle).score(img)
    status = _published(probe, img, 42).status[0]
    assert status.message == want.class_name and status.level == DiagnosticStatus.OK  # no positive class
    assert spin_until(ros[1], lambda: names.SCORE_STAMPED in probe.got and names.DECISION in probe.got)
    stamped = probe.got[names.SCORE_STAMPED][-1]
    assert stamped.header.stamp.nanosec == 42
    assert float({kv.key: kv.value for kv in stamped.status[0].values}["score"]) == pytest.approx(want.score, rel=1e-5)
    assert probe.got[names.DECISION][-1].data == want.is_anomaly
