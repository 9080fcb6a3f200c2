"""INT8 through the runtime: a calibrated copy of the tiny bundle loads its int8-cpu model and threshold."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.pipeline import Pipeline

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def int8_bundle(tiny_bundle, tmp_path_factory):
    from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle

    copy = shutil.copytree(tiny_bundle, tmp_path_factory.mktemp("int8") / "bundle")
    calibrate_bundle(CalibrateConfig(bundle=str(copy), data="digits", target="cpu", method="minmax",
                                     num_images=64, holdout_images=128))
    return copy


def test_int8_pipeline_uses_the_int8_model_and_its_threshold(int8_bundle):
    fp32 = Pipeline.load(int8_bundle, backend="ort-cpu", precision="fp32")
    int8 = Pipeline.load(int8_bundle, backend="ort-cpu", precision="int8")
    assert int8.precision_key == "int8-cpu" and int8.runner.model_name == "model.int8-cpu.onnx"
    assert int8.threshold_record.to_dict() == int8.bundle.manifest["thresholds"]["int8-cpu"]
    ds = open_dataset("digits", "test")
    images = [ds.image(i) for i in range(40)]
    a = np.array([r.raw_score for r in fp32.score_batch(images)])
    b = [r for r in int8.score_batch(images)]
    assert all(r.precision == "int8-cpu" and r.bundle_hash == int8.bundle.hash for r in b)
    b = np.array([r.raw_score for r in b])
    assert np.corrcoef(np.argsort(np.argsort(a)), np.argsort(np.argsort(b)))[0, 1] > 0.9
