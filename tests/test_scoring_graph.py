"""The scoring subgraph (``export.scoring_graph``) against the numpy detectors, on random features.

A pass-through model (graph inputs copied to ``embedding``/``patches``) gets each detector's
scoring appended; ONNX Runtime's ``anomaly_score``/``anomaly_map`` must match ``detector.score``
within the export tolerance (largest difference over the largest reference magnitude).
"""

from __future__ import annotations

import numpy as np
import pytest

from requires import require

require("onnx")

import onnx  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from edgessl.edge_runtime.backends.ort import cpu_session  # noqa: E402
from edgessl.edge_runtime.detectors import (CombinedDetector, GaussianDetector, KnnDetector,  # noqa: E402
                                            PatchDetector)
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.export.scoring_graph import SCORING_PREFIX, append_scoring, scoring_nodes  # noqa: E402

TOLERANCE = 1e-4  # export.verify.TOLERANCE
D, C, H, W, N = 12, 6, 4, 5, 7


def passthrough(opset: int) -> onnx.ModelProto:
    """Inputs ``emb``/``pat`` copied to outputs ``embedding`` ``(N, D)`` and ``patches`` ``(N, C, H, W)``."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["emb"], ["embedding"]), helper.make_node("Identity", ["pat"], ["patches"])],
        "features",
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["batch", D]),
         helper.make_tensor_value_info("pat", TensorProto.FLOAT, ["batch", C, H, W])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", D]),
         helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["batch", C, H, W])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def detectors(rng: np.random.RandomState) -> dict:
    a = rng.randn(3 * D, D)
    gaussian = GaussianDetector(rng.randn(D) * 2, np.linalg.inv(np.cov(a.T) + 0.1 * np.eye(D)))
    knn = KnnDetector(rng.randn(40, D) + 1.0, k=3)
    patch = PatchDetector(rng.randn(90, C).astype(np.float32) * 3 + 5, k=2, top=3)
    mean = PatchDetector(patch.bank, k=1, top=0)  # the image score: the whole map's mean
    return {"gaussian": gaussian, "knn": knn, "patch": patch, "patch_max": PatchDetector(patch.bank, k=1, top=1),
            "patch_mean": mean,
            "combined": CombinedDetector([gaussian, knn, patch], [1.0, 0.2, 3.0], [0.5, 0.05, 1.5]),
            "combined_mean": CombinedDetector([gaussian, knn, mean], [1.0, 0.2, 3.0], [0.5, 0.05, 1.5])}


def features(rng: np.random.RandomState, det) -> dict[str, np.ndarray]:
    """Random features, some of them exactly bank rows (distance 0: the hardest case for precision)."""
    emb = (rng.randn(N, D) + 1.0).astype(np.float32)
    pat = (rng.randn(N, C, H, W) * 3 + 5).astype(np.float32)
    banks = {type(p).__name__: p.bank for p in getattr(det, "parts", [det]) if hasattr(p, "bank")}
    if "KnnDetector" in banks:
        emb[0] = banks["KnnDetector"][0] * 3.0
    if "PatchDetector" in banks:
        pat[1, :, 0, 0], pat[1, :, 2, 3] = banks["PatchDetector"][0], banks["PatchDetector"][5]
    return {"embedding": emb, "patches": pat}


def rel(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    return float(np.abs(ref - got).max() / np.abs(ref).max())


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("kind", ["gaussian", "knn", "patch", "patch_max", "patch_mean", "combined", "combined_mean"])
def test_graph_scores_match_the_numpy_detector(kind, opset):
    rng = np.random.RandomState(0)
    det = detectors(rng)[kind]
    model = append_scoring(passthrough(opset), det)
    feats = features(rng, det)
    names = [o.name for o in model.graph.output]
    got = dict(zip(names, cpu_session(model.SerializeToString()).run(None, {"emb": feats["embedding"],
                                                                             "pat": feats["patches"]})))
    ref = det.score(feats)
    assert got["anomaly_score"].shape == (N,) and rel(ref.raw_scores, got["anomaly_score"]) <= TOLERANCE
    if det.has_maps:
        assert got["anomaly_map"].shape == (N, H, W) and rel(ref.maps, got["anomaly_map"]) <= TOLERANCE
    else:
        assert "anomaly_map" not in got
    np.testing.assert_array_equal(got["embedding"], feats["embedding"])  # the features stay outputs


def test_every_scoring_node_is_named_for_calibration():
    model = append_scoring(passthrough(17), detectors(np.random.RandomState(0))["combined"])
    added = [n.name for n in model.graph.node if n.op_type != "Identity" or n.name]
    assert scoring_nodes(model) == [n for n in added if n.startswith(SCORING_PREFIX)]
    assert {n.op_type for n in model.graph.node if n.name in scoring_nodes(model)} >= {"MatMul", "TopK", "Gather"}


def test_a_detector_needs_its_model_output():
    model = passthrough(17)
    del model.graph.output[1]  # no patches
    with pytest.raises(EdgesslError, match="patches"):
        append_scoring(model, detectors(np.random.RandomState(0))["patch"])
