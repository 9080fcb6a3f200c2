"""A small, real bundle made without torch, for the runtime's tests.

The model is written with ONNX's helper API (conv 3x3 stride 2 + ReLU -> ``patches``; global
average pool -> ``embedding``), run with ONNX Runtime on the digits' normal class (0) to fit a
detector (``knn`` on embeddings or ``patch`` on patch features) and a threshold from held-out
normal scores; the bundle is made with ``update_bundle``, as ``edgessl export`` makes one. Only
numpy, onnx and onnxruntime.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgessl.edge_runtime.bundle_update import update_bundle
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.detectors import KnnDetector, PatchDetector
from edgessl.edge_runtime.preprocess import PreprocessSpec, preprocess_batch
from edgessl.edge_runtime.thresholds import fit_threshold

SPEC = PreprocessSpec(image_size=16, channels=1, mean=(0.3,), std=(0.35,))
CHANNELS = 8


def write_model(path: Path, channels_in: int = 1, seed: int = 0) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    size = SPEC.image_size
    rng = np.random.RandomState(seed)
    w = (rng.randn(CHANNELS, channels_in, 3, 3) * 0.5).astype(np.float32)
    b = (rng.randn(CHANNELS) * 0.1).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["conv"], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["patches"]),
        helper.make_node("GlobalAveragePool", ["patches"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["embedding"], axis=1),
    ]
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", channels_in, size, size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", CHANNELS]),
         helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["batch", CHANNELS, size // 2, size // 2])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def _outputs(model: Path, images: list[np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, {"input": preprocess_batch(images, SPEC)})))


def make_bundle(out: Path, detector: str = "knn", graph_scores: bool = False, fit_record: bool = False) -> Path:
    """Write a sealed fp32 bundle to ``out`` and return it. ``graph_scores``: the model computes the
    detector's ``anomaly_score``/``anomaly_map`` itself (``export.scoring_graph``), as an exported
    bundle's does; without it, the bundle of an edgessl before in-graph scoring. ``fit_record``:
    keep the held-out normals' indices and scores in ``detector/fit.json``, as ``edgessl fit`` does."""
    def write(root: Path, _: dict) -> dict:
        write_model(root / "model.onnx")
        train = open_dataset("digits", "train")
        indices = np.flatnonzero(train.labels == 0)
        normal = [train.image(i) for i in indices]
        fit_imgs, held = normal[:60], normal[60:]
        bank = _outputs(root / "model.onnx", fit_imgs)
        det = KnnDetector(bank["embedding"], k=3) if detector == "knn" else PatchDetector(
            bank["patches"].transpose(0, 2, 3, 1).reshape(-1, CHANNELS), k=1)
        det.save(root / "detector")
        held_scores = det.score(_outputs(root / "model.onnx", held)).raw_scores
        threshold = fit_threshold(held_scores, 0.1, 0.9, strict=True)
        if fit_record:
            (root / "detector" / "fit.json").write_text(json.dumps({"data": "digits", "normal_label": "0", "holdout": {
                "method": "held-out", "parts": [{"split": "train", "indices": indices[60:].tolist(),
                                                 "raw_scores": held_scores.tolist()}]}}))
        outputs = ["embedding", "patches"]
        if graph_scores:
            from edgessl.export.scoring_graph import add_scoring

            outputs += list(add_scoring(root / "model.onnx", det))
        return {
            "model": {"input": {"name": "input", "shape": ["batch", 1, SPEC.image_size, SPEC.image_size]},
                      "outputs": outputs, "opset": 17},
            "preprocess": SPEC.to_dict(),
            "detector": {"kind": det.kind, "directory": "detector", "inputs": list(det.inputs), "data": "digits",
                         "normal_label": "0"},
            "precisions": {"fp32": {"model": "model.onnx"}},
            "thresholds": {"fp32": threshold.to_dict()},
            "provenance": {"made_by": "tests/runtime_bundle.py"},
        }

    update_bundle(out, write, create=True, replace=True)
    return out
