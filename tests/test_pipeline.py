"""The runtime API (``Pipeline``/``Result``) on real bundles made without torch (tests/runtime_bundle.py)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgessl.edge_runtime.backends import Backend, available_backends, select_backend
from edgessl.edge_runtime.backends.ort import OrtBackend, OrtOptions
from edgessl.edge_runtime.backends.tensorrt_native import tensorrt_available
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.pipeline import Pipeline, map_to_image
from edgessl.edge_runtime.preprocess import PreprocessSpec, preprocess_batch
from runtime_bundle import make_bundle


@pytest.fixture(scope="module")
def knn_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("knn"), "knn")


@pytest.fixture(scope="module")
def patch_bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("patch"), "patch")


@pytest.fixture(scope="module")
def digits():
    ds = open_dataset("digits", "test")
    return [ds.image(i) for i in range(12)], ds.labels[:12]


def test_scores_are_normalised_raw_scores_with_the_bundle_threshold(knn_bundle, digits):
    pipe = Pipeline.load(knn_bundle)
    assert pipe.backend in available_backends() and pipe.precision_key == "fp32"
    rec = pipe.threshold_record
    for r in pipe.score_batch(digits[0]):
        assert r.score == pytest.approx((r.raw_score - rec.offset) / rec.scale)
        assert r.is_anomaly == (r.raw_score >= rec.raw_threshold)
        assert r.threshold == 1.0 and r.bundle_hash == pipe.bundle.hash and r.backend == pipe.backend
        assert set(r.latency_ms) == {"preprocess", "inference", "score", "total"}
        assert r.features is None and r.anomaly_map is None  # knn on embeddings: no map
        json.dumps(r.to_dict())


def test_batch_scores_equal_single_scores(knn_bundle, digits):
    pipe = Pipeline.load(knn_bundle)
    batch = [r.raw_score for r in pipe.score_batch(digits[0])]
    single = [pipe.score(img).raw_score for img in digits[0]]
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)


def test_features_are_the_models_embedding(knn_bundle, digits):
    import onnxruntime as ort

    pipe = Pipeline.load(knn_bundle)
    sess = ort.InferenceSession(str(knn_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    want = sess.run(["embedding"], {"input": preprocess_batch(digits[0][:3], pipe.spec)})[0]
    got = np.stack([r.features for r in pipe.score_batch(digits[0][:3], with_features=True)])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_threshold_override_is_in_normalised_units(knn_bundle, digits):
    pipe = Pipeline.load(knn_bundle, threshold=0.5)
    for r in pipe.score_batch(digits[0]):
        assert r.threshold == 0.5 and r.is_anomaly == (r.score >= 0.5)


def test_anomaly_maps_have_the_input_image_size(patch_bundle, digits):
    pipe = Pipeline.load(patch_bundle)
    for shape in [(8, 8), (20, 30), (37, 23, 3)]:
        img = np.random.RandomState(0).randint(0, 255, shape, dtype=np.uint8)
        r = pipe.score(img)
        assert r.anomaly_map.shape == shape[:2] and r.anomaly_map.dtype == np.float32
    # the map's maximum is the image score (normalised alike), up to bilinear smoothing
    r = pipe.score(digits[0][0])
    assert r.anomaly_map.max() <= r.score + 1e-4


def test_map_to_image_undoes_the_centre_crop():
    spec = PreprocessSpec(image_size=16, channels=1, mean=(0.5,), std=(0.25,), resize="shorter_center_crop")
    m = map_to_image(np.arange(64, dtype=np.float32).reshape(8, 8), (20, 40), spec)
    assert m.shape == (20, 40)
    assert (m[:, :5] == 0).all() and (m[:, -5:] == 0).all()  # the cropped-away sides: the map's minimum
    assert m[:, 10:30].max() > 50


def test_unusable_image_raises_edgessl_error(knn_bundle):
    pipe = Pipeline.load(knn_bundle)
    for bad in [np.zeros((0, 4), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4), np.int64)]:
        with pytest.raises(EdgesslError):
            pipe.score(bad)


def test_tampered_bundle_is_refused(knn_bundle, tmp_path):
    copy = shutil.copytree(knn_bundle, tmp_path / "b")
    with open(copy / "detector" / "detector.npz", "ab") as f:
        f.write(b"\0")
    with pytest.raises(EdgesslError, match="sha256"):
        Pipeline.load(copy)


def test_missing_precision_and_non_bundle_are_refused(knn_bundle, tmp_path):
    with pytest.raises(EdgesslError, match="no int8-cpu model.*calibrate"):
        Pipeline.load(knn_bundle, backend="ort-cpu", precision="int8")
    with pytest.raises(EdgesslError, match="not a bundle"):
        Pipeline.load(tmp_path)
    with pytest.raises(EdgesslError, match="unknown precision"):
        Pipeline.load(knn_bundle, precision="fp8")


def test_unavailable_backend_lists_the_available_ones(knn_bundle):
    missing = [b for b in ("ort-cuda", "ort-tensorrt", "tensorrt") if b not in available_backends()]
    if not missing:
        pytest.skip("every backend is available on this machine")
    with pytest.raises(EdgesslError, match=r"not available.*available: .*ort-cpu"):
        Pipeline.load(knn_bundle, backend=missing[0])
    with pytest.raises(EdgesslError, match="choose one of"):
        select_backend("openvino")
    assert select_backend("auto") == available_backends()[0]


def test_ort_backend_follows_the_protocol_and_options(knn_bundle):
    be = OrtBackend((knn_bundle / "model.onnx").read_bytes(), "model.onnx", "ort-cpu", OrtOptions(intra_op_threads=1, graph_optimization="basic"))
    assert isinstance(be, Backend) and be.providers == ["CPUExecutionProvider"]
    out = be.run(np.zeros((2, 1, 16, 16), np.float32))
    assert out["embedding"].shape == (2, 8) and out["patches"].shape == (2, 8, 8, 8)
    with pytest.raises(EdgesslError, match="optimisation level"):
        OrtBackend((knn_bundle / "model.onnx").read_bytes(), "model.onnx", "ort-cpu",
                   OrtOptions(graph_optimization="max"))


@pytest.mark.skipif(not tensorrt_available(), reason="needs TensorRT, the CUDA Python bindings and an NVIDIA GPU")
def test_tensorrt_backend_is_auto_when_present_with_an_engine():
    assert select_backend("auto", has_engine=lambda: True) == "tensorrt"
    assert select_backend("auto") != "tensorrt"  # no engine for this device: the best ONNX Runtime provider


def test_evaluate_bundle_gives_pixel_auroc_on_mvtec_masks(patch_bundle, tmp_path):
    import cv2

    from edgessl.edge_runtime.streams.evaluation import BundleEvalConfig, evaluate_bundle

    rng = np.random.RandomState(0)
    root = tmp_path / "mvtec"
    for sub in ("train/good", "test/good", "test/crack", "ground_truth/crack"):
        (root / sub).mkdir(parents=True)
    for i in range(4):
        plain = rng.randint(90, 110, (24, 24), dtype=np.uint8)
        cv2.imwrite(str(root / "train/good" / f"{i:03d}.png"), plain)
        cv2.imwrite(str(root / "test/good" / f"{i:03d}.png"), plain)
        cracked, mask = plain.copy(), np.zeros((24, 24), np.uint8)
        cracked[4:12, 6:18], mask[4:12, 6:18] = 255, 255
        cv2.imwrite(str(root / "test/crack" / f"{i:03d}.png"), cracked)
        cv2.imwrite(str(root / "ground_truth/crack" / f"{i:03d}_mask.png"), mask)
    out = evaluate_bundle(BundleEvalConfig(bundle=str(patch_bundle), data=str(root), normal_label="good"))
    assert out["test_images"] == 8 and out["normal_label"] == "good" and out["detector"] == "patch"
    assert 0.0 <= out["pixel_auroc"] <= 1.0 and 0.0 <= out["auroc"] <= 1.0
    assert {"aupr", "f1_max", "threshold", "fpr_at_threshold", "tpr_at_threshold"} <= set(out)


def _spinning(pipe: Pipeline) -> str:
    return pipe.runner.session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")


def test_patch_scoring_gets_the_cores_and_a_lazy_map(knn_bundle, patch_bundle, digits):
    """A blas_bound detector (the patch search) stops ONNX Runtime's threads spinning unless the caller
    says otherwise; the image-size map is computed on first access, once."""
    assert _spinning(Pipeline.load(knn_bundle)) == "1" and _spinning(Pipeline.load(patch_bundle)) == "0"
    assert _spinning(Pipeline.load(patch_bundle, options=OrtOptions(intra_op_threads=1))) == "0"
    assert _spinning(Pipeline.load(patch_bundle, options=OrtOptions(spinning=True))) == "1"
    r = Pipeline.load(patch_bundle).score(digits[0][0])
    assert "anomaly_map" not in vars(r)  # not computed yet
    first = r.anomaly_map
    assert first is r.anomaly_map and first.shape == digits[0][0].shape[:2]


@pytest.mark.parametrize("kind", ["knn", "patch"])
def test_a_model_that_scores_itself_is_scored_in_one_session_call(kind, tmp_path, digits, monkeypatch):
    """A bundle whose model outputs ``anomaly_score``/``anomaly_map`` (as ``edgessl export`` writes it)
    scores like the numpy detector on the same features, without calling it; no numpy search, so
    ONNX Runtime's threads may spin."""
    numpy_pipe = Pipeline.load(make_bundle(tmp_path / "numpy", kind))
    graph_bundle = make_bundle(tmp_path / "graph", kind, graph_scores=True)
    graph_pipe = Pipeline.load(graph_bundle)
    expected = numpy_pipe.score_batch(digits[0])
    monkeypatch.setattr(type(graph_pipe.detector), "score", lambda *a: pytest.fail("the numpy detector was called"))
    got = graph_pipe.score_batch(digits[0])
    raw = np.array([r.raw_score for r in expected])
    assert np.abs(np.array([r.raw_score for r in got]) - raw).max() <= 1e-4 * np.abs(raw).max()
    assert [r.is_anomaly for r in got] == [r.is_anomaly for r in expected]
    if kind == "patch":
        maps = np.array([r.anomaly_map for r in expected])
        assert np.abs(np.array([r.anomaly_map for r in got]) - maps).max() <= 1e-4 * np.abs(maps).max()
    assert _spinning(graph_pipe) == "1"
