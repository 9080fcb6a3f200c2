"""``edgessl calibrate`` of a classifier bundle: INT8 judged by the task (accuracy and the positive
class's AUROC against fp32 on held-out labelled images), the same fallback and the same refusal;
the INT8 model then classifies through the runtime."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from requires import require

require("torch")

from conftest import TINY_DATA  # noqa: E402
from edgessl.calibration.calibrate import calibrate_bundle  # noqa: E402
from edgessl.edge_runtime.data.classifier_figures import classifier_figures  # noqa: E402
from edgessl.calibration.config import CalibrateConfig  # noqa: E402
from edgessl.calibration.gate import GateFailed  # noqa: E402
from edgessl.edge_runtime.bundle import Bundle  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.pipeline import Pipeline  # noqa: E402

QUICK = dict(target="cpu", method="minmax", num_images=32, holdout_images=120, max_float_nodes=0)


def test_classifier_figures_by_hand():
    ref = np.array([[.9, .1], [.2, .8], [.6, .4], [.3, .7]])
    got = np.array([[.9, .1], [.95, .05], [.6, .4], [.3, .7]])
    f = classifier_figures(ref, got, np.array([0, 1, 1, -1]), positive=1)
    assert f["class_images"] == 3 and f["accuracy_fp32"] == 2 / 3 and f["accuracy_change"] == -1 / 3
    assert f["positive_auroc_fp32"] == 1.0 and f["positive_auroc_change"] == pytest.approx(-0.5)


def test_classifier_bundle_is_gated_on_accuracy_and_auroc(tiny_classifier_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_classifier_bundle, b)
    report = calibrate_bundle(CalibrateConfig(bundle=str(b), max_accuracy_drop=0.2, max_auroc_change=0.2, **QUICK))
    metrics = report["targets"]["int8-cpu"]["metrics"]
    assert metrics["class_images"] == 120 and abs(metrics["accuracy_change"]) <= 0.2
    assert "positive_auroc_change" in metrics and "score_spearman" not in metrics
    assert report["calibration"]["split"] == "train (every class)"
    m = Bundle.load(b).manifest
    assert "int8-cpu" in m["precisions"] and "thresholds" not in m
    assert "accuracy_change" in m["precisions"]["int8-cpu"]["gate"]
    r = Pipeline.load(b, backend="ort-cpu", precision="int8").score(open_dataset(TINY_DATA, "test").image(0))
    assert r.class_name in m["classifier"]["classes"] and r.score is None and r.precision == "int8-cpu"


def test_a_failed_accuracy_gate_changes_nothing(tiny_classifier_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_classifier_bundle, b)
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(GateFailed, match="accuracy change") as info:  # an impossible demand: gain 50 points
        calibrate_bundle(CalibrateConfig(bundle=str(b), max_accuracy_drop=-0.5, max_auroc_change=0.2, **QUICK))
    assert not info.value.report["targets"]["int8-cpu"]["passed"]
    assert (b / "manifest.json").read_bytes() == before and not (b / "model.int8-cpu.onnx").exists()
    json.dumps(info.value.report)  # the report is JSON-able, as the CLI prints it
