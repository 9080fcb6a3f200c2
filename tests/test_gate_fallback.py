"""The INT8 gate's fallback on a real model with the real quantizer: one layer made sensitive on
purpose fails the gate; the fallback keeps exactly that layer in float, names it, and passes.

The model (ONNX helper API): ``conv_a`` (1 -> 8 channels) whose channel 0 carries a bias of 1000, so
the activation feeding ``conv_b`` spans [0, ~1000] while the information is in channels 1-7 (values
of order 1); ``conv_b`` ignores channel 0. Quantizing ``conv_b``'s input per tensor (scale ~1000/127)
rounds channels 1-7 to zero: the embedding collapses. Keeping ``conv_b`` in float restores it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from requires import require

require("onnx")
require("onnxruntime")

from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle  # noqa: E402
from edgessl.calibration.gate import GateFailed  # noqa: E402
from edgessl.calibration.gate_report import SUMMARY_FILE  # noqa: E402
from edgessl.edge_runtime.bundle import Bundle  # noqa: E402
from edgessl.edge_runtime.bundle_update import update_bundle  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.detectors import KnnDetector  # noqa: E402
from edgessl.edge_runtime.preprocess import preprocess_batch  # noqa: E402
from edgessl.edge_runtime.thresholds import fit_threshold  # noqa: E402
from runtime_bundle import SPEC  # noqa: E402

HUGE_BIAS = 1000.0
C = 8


def write_sensitive_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.RandomState(0)
    wa = (rng.randn(C, 1, 3, 3) * 0.5).astype(np.float32)
    ba = (rng.randn(C) * 0.1).astype(np.float32)
    ba[0] = HUGE_BIAS
    wb = (rng.randn(C, C, 3, 3) * 0.3).astype(np.float32)
    wb[:, 0] = 0.0  # conv_b does not look at the huge channel
    bb = (rng.randn(C) * 0.05).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "wa", "ba"], ["a"], name="conv_a", kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["a"], ["a_relu"], name="relu_a"),
        helper.make_node("Conv", ["a_relu", "wb", "bb"], ["b"], name="conv_b", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["b"], ["patches"], name="relu_b"),
        helper.make_node("GlobalAveragePool", ["patches"], ["pooled"], name="pool"),
        helper.make_node("Flatten", ["pooled"], ["embedding"], name="flatten", axis=1),
    ]
    graph = helper.make_graph(
        nodes, "sensitive",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", C]),
         helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["batch", C, 8, 8])],
        [numpy_helper.from_array(a, n) for a, n in ((wa, "wa"), (ba, "ba"), (wb, "wb"), (bb, "bb"))])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def _embeddings(model: Path, images: list) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return sess.run(["embedding"], {"input": preprocess_batch(images, SPEC)})[0]


def make_sensitive_bundle(out: Path) -> Path:
    def write(root: Path, _: dict) -> dict:
        write_sensitive_model(root / "model.onnx")
        train = open_dataset("digits", "train")
        normal = [train.image(i) for i in np.flatnonzero(train.labels == 0)]
        det = KnnDetector(_embeddings(root / "model.onnx", normal[:60]), k=3)
        det.save(root / "detector")
        threshold = fit_threshold(det.score({"embedding": _embeddings(root / "model.onnx", normal[60:])}).raw_scores,
                                  0.15, 0.9, strict=True)  # 19 val normals: enough at 15%
        return {"model": {"input": {"name": "input", "shape": ["batch", 1, 16, 16]}, "opset": 17},
                "preprocess": SPEC.to_dict(),
                "detector": {"kind": det.kind, "directory": "detector", "inputs": list(det.inputs),
                             "normal_label": "0", "data": "digits"},
                "precisions": {"fp32": {"model": "model.onnx"}}, "thresholds": {"fp32": threshold.to_dict()},
                "engines": [], "provenance": {"made_by": "tests/test_gate_fallback.py"}}

    update_bundle(out, write, create=True)
    return out


CONFIG = dict(target="tensorrt", method="minmax", num_images=64, holdout_images=120, batch_size=64)


def test_gate_fails_without_the_fallback(tmp_path):
    b = make_sensitive_bundle(tmp_path / "bundle")
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(GateFailed, match="int8-tensorrt: embedding mean cosine") as info:
        calibrate_bundle(CalibrateConfig(bundle=str(b), max_float_nodes=0, **CONFIG))
    assert info.value.report["targets"]["int8-tensorrt"]["float_nodes"] == []
    assert (b / "manifest.json").read_bytes() == before  # a failed gate leaves the bundle as it was


def test_fallback_keeps_the_sensitive_layer_in_float_and_passes(tmp_path):
    b = make_sensitive_bundle(tmp_path / "bundle")
    report = calibrate_bundle(CalibrateConfig(bundle=str(b), max_float_nodes=4, **CONFIG))
    t = report["targets"]["int8-tensorrt"]
    first, last = t["attempts"][0], t["attempts"][-1]
    assert first["float_nodes"] == [] and any("embedding mean cosine" in f for f in first["failed"])
    assert t["passed"] and t["float_nodes"] == ["conv_b"] and last["failed"] == []
    assert t["sensitivity"][0]["node"] == "conv_b"  # the costliest when quantized alone
    assert last["metrics"]["embedding_cosine_mean"] > first["metrics"]["embedding_cosine_mean"]
    bundle = Bundle.load(b)
    assert bundle.manifest["precisions"]["int8-tensorrt"]["float_nodes"] == ["conv_b"]
    assert "conv_b" in (b / SUMMARY_FILE).read_text()
