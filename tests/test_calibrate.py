"""Calibration: both INT8 models run in ONNX Runtime, Q/DQ structure per target, real entropy
calibration, the gate's report, thresholds per precision, and bad input that changes nothing."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from requires import require

require("torch")

from edgessl.calibration.calib_data import check_batch  # noqa: E402
from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle  # noqa: E402
from edgessl.calibration.collect_ranges import TensorStats, entropy_threshold, tensor_ranges  # noqa: E402
from edgessl.calibration.compare import spearman  # noqa: E402
from edgessl.calibration.gate import GateCriteria, gate_failures, run_gate  # noqa: E402
from edgessl.edge_runtime.bundle import Bundle  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.edge_runtime.thresholds import Threshold  # noqa: E402

CRITERIA = GateCriteria(min_cosine_mean=CalibrateConfig.min_cosine, max_auroc_change=CalibrateConfig.max_auroc_change,
                        max_float_nodes=CalibrateConfig.max_float_nodes,
                        max_accuracy_drop=CalibrateConfig.max_accuracy_drop)


@pytest.fixture(scope="module")
def calibrated(tiny_bundle, tmp_path_factory):
    b = tmp_path_factory.mktemp("calibrated") / "bundle"
    shutil.copytree(tiny_bundle, b)
    report = calibrate_bundle(CalibrateConfig(bundle=str(b), target="both", method="minmax", num_images=48,
                                              holdout_images=120))
    return b, report


def _zero_points(path):
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    init = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
    acts = [init[n.input[2]] for n in m.graph.node if n.op_type == "QuantizeLinear"]
    weights = [n for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in init and init[n.input[0]].ndim == 4]
    return acts, weights, init


def test_both_int8_models_run_in_onnxruntime_cpu(calibrated):
    import onnxruntime as ort

    b, _ = calibrated
    bundle = Bundle.load(b)
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import verification_images

    x, _ = verification_images("digits", PreprocessSpec.from_dict(bundle.manifest["preprocess"]), 3)
    ref = ort.InferenceSession(bundle.model_bytes("fp32"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    for key in ("int8-cpu", "int8-tensorrt"):
        sess = ort.InferenceSession(bundle.model_bytes(key), providers=["CPUExecutionProvider"])
        out = sess.run(None, {"input": x})[0]
        assert out.shape == ref.shape == (3, 512)
        cos = (out * ref).sum(1) / np.linalg.norm(out, axis=1) / np.linalg.norm(ref, axis=1)
        assert cos.min() > 0.95


def test_qdq_structure_per_target(calibrated):
    b, _ = calibrated
    acts, weights, init = _zero_points(b / "model.int8-tensorrt.onnx")
    assert acts and all(z.dtype == np.int8 and (z == 0).all() for z in acts)  # symmetric int8 activations
    assert weights and all(init[w.input[1]].size > 1 for w in weights)  # per-channel weight scales
    acts, weights, _ = _zero_points(b / "model.int8-cpu.onnx")
    assert acts and all(z.dtype == np.uint8 for z in acts)  # asymmetric uint8 activations
    assert any((z != 0).any() for z in acts)
    import onnx

    trt = onnx.load(str(b / "model.int8-tensorrt.onnx"))
    produced_by_q = {o for n in trt.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = [n for n in trt.graph.node if n.op_type == "Conv"]
    assert all(c.input[0] in produced_by_q for c in convs)  # every Conv reads a dequantized input


def test_the_scoring_stays_float32_in_both_int8_models(calibrated):
    """The detector's search (``score/...`` nodes) is not quantized: no Q/DQ on what it computes, its
    bank float32; on the INT8 model's own features the graph's score is the numpy detector's."""
    import onnx
    from onnx import TensorProto

    from edgessl.edge_runtime.backends.ort import cpu_session, run_batches
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import verification_images
    from edgessl.export.scoring_graph import SCORING_PREFIX

    b, _ = calibrated
    bundle = Bundle.load(b)
    x, _ = verification_images("digits", PreprocessSpec.from_dict(bundle.manifest["preprocess"]), 32)
    detector = bundle.detector()
    for key in ("int8-cpu", "int8-tensorrt"):
        graph = onnx.load_from_string(bundle.model_bytes(key)).graph
        computed = {o for n in graph.node if n.name.startswith(SCORING_PREFIX) for o in n.output}
        assert computed and not [n.name for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in computed]
        constants = [i for i in graph.initializer if i.name.startswith(SCORING_PREFIX)]
        assert any(i.data_type == TensorProto.FLOAT and len(i.dims) == 2 for i in constants)  # the bank
        assert not [i.name for i in constants if i.data_type in (TensorProto.INT8, TensorProto.UINT8)]
        out = run_batches(cpu_session(bundle.model_bytes(key)), x)
        ref = detector.score(out).raw_scores
        assert np.abs(out["anomaly_score"] - ref).max() <= 1e-4 * np.abs(ref).max()


def test_tensorrt_model_passes_the_preflight_with_float_biases(calibrated):
    """What TensorRT's parser takes: every DequantizeLinear reads int8 with zero point 0 (no int32
    bias), the residual input of each residual Add is dequantized, and the report says what float
    biases changed."""
    import onnx
    from onnx import numpy_helper

    from edgessl.calibration.qdq import residual_input
    from edgessl.export.tensorrt_preflight import TENSORRT_LINES, check_bundle

    b, report = calibrated
    assert check_bundle(Bundle.load(b), TENSORRT_LINES, (1, 1, 16)) == {"model.onnx": [], "model.int8-tensorrt.onnx": []}
    trt = onnx.load(str(b / "model.int8-tensorrt.onnx"))
    graph = onnx.shape_inference.infer_shapes(trt).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.value_info, *graph.input]}
    types.update({i.name: i.data_type for i in graph.initializer})
    init = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    dqs = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    assert dqs and all(types[n.input[0]] == onnx.TensorProto.INT8 for n in dqs)
    assert all(init[n.input[2]].dtype == np.int8 and not init[n.input[2]].any() for n in dqs)
    producer = {o: n.op_type for n in graph.node for o in n.output}
    adds = [n for n in graph.node if n.op_type == "Add" and residual_input(graph, n) is not None]
    assert adds and all(producer[n.input[residual_input(graph, n)]] == "DequantizeLinear" for n in adds)
    assert all(producer[n.input[1 - residual_input(graph, n)]] == "Conv" for n in adds)  # fuses into its Conv
    t = report["targets"]["int8-tensorrt"]
    assert t["biases"] == "float" and t["passed"]
    assert t["float_biases"]["biases_kept_float"] == sum(n.op_type == "Conv" for n in graph.node)
    assert set(t["float_biases"]["change"]) >= {"embedding_cosine_mean", "auroc_int8"}
    assert "float biases vs int32 biases" in (b / "calibration_summary.txt").read_text()
    m = Bundle.load(b).manifest
    assert m["precisions"]["int8-tensorrt"]["tensorrt_preflight"]["passed"]
    assert "float_biases" not in report["targets"]["int8-cpu"]  # the CPU model keeps int32 biases


def test_thresholds_and_report_per_precision(calibrated, tiny_bundle):
    b, report = calibrated
    bundle = Bundle.load(b)
    m = bundle.manifest
    assert set(m["precisions"]) == set(m["thresholds"]) == {"fp32", "int8-cpu", "int8-tensorrt"}
    t32 = Threshold.from_dict(bundle.threshold("fp32"))
    assert t32 == Threshold.from_dict(Bundle.load(tiny_bundle).threshold("fp32"))
    for key in ("int8-cpu", "int8-tensorrt"):
        t8 = Threshold.from_dict(bundle.threshold(key))
        assert (t8.target_fpr, t8.confidence, t8.n_holdout) == (t32.target_fpr, t32.confidence, t32.n_holdout)
        metrics = report["targets"][key]["metrics"]
        for k in ("embedding_cosine_mean", "embedding_cosine_p5", "score_spearman", "auroc_fp32", "auroc_int8",
                  "auroc_change"):
            assert k in metrics
        assert metrics["embedding_cosine_mean"] >= 0.99 and report["targets"][key]["passed"]
        assert len(report["targets"][key]["holdout_normal_scores"]) == t8.n_holdout
    on_disk = json.loads((b / "calibration_report.json").read_text())
    assert set(on_disk["targets"]) == {"int8-cpu", "int8-tensorrt"}
    assert "embedding cosine mean" in (b / "calibration_summary.txt").read_text()
    assert m["calibration"]["num_images"] == 48 and len(m["calibration"]["calibration_set_sha256"]) == 64
    assert not (b / "calibration.cache").exists()  # TensorRT 10 and 11 take the Q/DQ model; no calibrator cache


def test_entropy_is_not_minmax_on_a_skewed_histogram():
    rng = np.random.RandomState(0)
    x = np.abs(np.r_[rng.randn(200_000), [40.0, 55.0]])  # a bulk near 0-4 and two far outliers
    absmax = float(x.max())
    hist = np.bincount(np.minimum((x * 2048 / absmax).astype(int), 2047), minlength=2048)
    t = entropy_threshold(hist, absmax)
    assert 2.0 < t < 0.2 * absmax
    stats = {"a": TensorStats(0.0, absmax, hist), "input": TensorStats(0.0, absmax, hist)}
    ent, mm = tensor_ranges(stats, "entropy", keep_full=("input",)), tensor_ranges(stats, "minmax")
    assert mm["a"] == (0.0, absmax) and ent["a"][1] == pytest.approx(t) and ent["input"] == (0.0, absmax)
    assert tensor_ranges(stats, "percentile", 99.0)["a"][1] < 4.0


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.RandomState(1)
    a = rng.randn(50)
    b = a + 0.5 * rng.randn(50)
    b[:5] = b[5]  # ties
    assert spearman(a, b) == pytest.approx(spearmanr(a, b).statistic, abs=1e-12)


def test_gate_keeps_costliest_layers_in_float_until_it_passes():
    costs = {"conv1": 0.02, "conv2": 0.001, "add": 0.005}

    def quantize(exclude, only):
        return {"exclude": exclude, "only": only}

    def cos_of(model):
        nodes = model["only"] or [n for n in costs if n not in model["exclude"]]
        return 1.0 - sum(costs[n] for n in nodes)

    def evaluate(model):
        c = cos_of(model)
        return {"embedding_cosine_mean": c, "embedding_cosine_p5": c, "score_spearman": 1.0, "images": 10}

    r = run_gate(quantize, evaluate, list(costs), CRITERIA, lambda m: 1.0 - cos_of(m))
    assert r["passed"] and r["float_nodes"] == ["conv1"]
    assert [s["node"] for s in r["sensitivity"]] == ["conv1", "add", "conv2"]
    assert len(r["attempts"]) == 2 and r["attempts"][0]["failed"]
    assert gate_failures({"embedding_cosine_mean": 1.0, "embedding_cosine_p5": 1.0, "score_spearman": 1.0,
                          "auroc_change": -0.02}, CRITERIA) == ["AUROC change -0.0200 beyond +-0.01"]


def test_bad_input_changes_nothing(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(EdgesslError, match="at least 32"):
        calibrate_bundle(CalibrateConfig(bundle=str(b), num_images=8))
    with pytest.raises(EdgesslError, match="failed the accuracy gate") as failed:
        calibrate_bundle(CalibrateConfig(bundle=str(b), num_images=32, method="minmax", target="cpu",
                                         min_cosine=1.01, max_float_nodes=0, holdout_images=40))
    assert failed.value.report["targets"]["int8-cpu"]["passed"] is False
    assert (b / "manifest.json").read_bytes() == before and sorted(p.name for p in b.iterdir()) == \
        ["detector", "manifest.json", "model.onnx"]
    with pytest.raises(EdgesslError, match="disagree"):
        check_batch(np.zeros((2, 3, 16, 16), np.float32), (1, 16, 16), "calibration")
    shutil.move(b / "detector" / "detector.npz", tmp_path / "detector.npz")
    with pytest.raises(EdgesslError, match="detector/detector.npz listed in the manifest is missing"):
        calibrate_bundle(CalibrateConfig(bundle=str(b)))
    m = json.loads(before)
    m["manifest_version"] = 0
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgesslError, match="format version 0"):
        calibrate_bundle(CalibrateConfig(bundle=str(b)))


def test_opset_too_low_for_qdq_is_refused(tiny_bundle, tmp_path):
    import onnx

    from edgessl.edge_runtime.bundle import seal

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    old = onnx.load(str(b / "model.onnx"))
    old.opset_import[0].version = 11  # Conv, Relu, Add, GlobalAveragePool, Flatten: the same in opset 11
    onnx.save(old, str(b / "model.onnx"))
    seal(b, Bundle.load(b, verify=False).manifest)  # a consistent bundle whose model is opset 11
    before = (b / "manifest.json").read_bytes()
    with pytest.raises(EdgesslError, match="opset 11; INT8 Q/DQ needs opset 13"):
        calibrate_bundle(CalibrateConfig(bundle=str(b)))
    assert (b / "manifest.json").read_bytes() == before


def test_cli_calibrate_error_is_one_line(tmp_path, capsys):
    from edgessl.cli import main

    assert main(["calibrate", "--bundle", str(tmp_path / "none"), "--data", "digits"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a bundle" in err[0]


PNEUMONIA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


@pytest.mark.slow
def test_pneumoniamnist_resnet18_bundle_passes_the_gate(tmp_path):
    """The acceptance's setting, trained very briefly (benchmarks/gate_pneumonia.py measures it in full)."""
    if not PNEUMONIA.is_file():
        pytest.skip(f"{PNEUMONIA} not found (shared data absent)")
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.fit import FitConfig, fit_run
    from edgessl.train.pretrain import PretrainConfig, pretrain

    data, run, b = str(PNEUMONIA), tmp_path / "run", tmp_path / "bundle"
    pretrain(PretrainConfig(data=data, method="simclr", image_size=28, batch_size=32, max_steps=1, max_images=256,
                            device="cpu", out=str(run)))
    fit_run(FitConfig(run=str(run), data=data, normal_label="0", detector="knn", target_fpr=0.05, max_images=300,
                      device="cpu"))
    export_bundle(ExportConfig(run=str(run), out=str(b), verify_images=32))
    report = calibrate_bundle(CalibrateConfig(bundle=str(b), data=data, method="entropy", num_images=64,
                                              holdout_images=200))
    for key in ("int8-cpu", "int8-tensorrt"):
        m = report["targets"][key]["metrics"]
        assert report["targets"][key]["passed"]
        assert m["embedding_cosine_mean"] >= 0.99 and abs(m["auroc_change"]) <= 0.01 and m["anomalies"] > 50
    assert set(Bundle.load(b).manifest["thresholds"]) == {"fp32", "int8-cpu", "int8-tensorrt"}


def test_calibration_needs_no_torch(tiny_bundle, tmp_path):
    """calibration/ is onnx + onnxruntime + the runtime: it runs where `import torch` fails."""
    import subprocess
    import sys

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    code = ("import sys\n"
            "class NoTorch:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] in ('torch', 'torchvision'):\n"
            "            raise ImportError('torch is blocked in this test')\n"
            "sys.meta_path.insert(0, NoTorch())\n"
            "from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle\n"
            f"r = calibrate_bundle(CalibrateConfig(bundle={str(b)!r}, target='cpu', method='percentile', num_images=32,"
            " holdout_images=40))\n"
            "assert 'torch' not in sys.modules\n"
            "print(r['targets']['int8-cpu']['passed'])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().endswith("True")
    assert "int8-cpu" in Bundle.load(b).manifest["thresholds"]


def test_calibrating_one_target_keeps_the_other(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    calibrate_bundle(CalibrateConfig(bundle=str(b), target="cpu", method="minmax", num_images=32, holdout_images=40))
    cpu_model = (b / "model.int8-cpu.onnx").read_bytes()
    calibrate_bundle(CalibrateConfig(bundle=str(b), target="tensorrt", method="percentile", num_images=32,
                                     holdout_images=40))
    m = Bundle.load(b).manifest
    assert set(m["thresholds"]) == {"fp32", "int8-cpu", "int8-tensorrt"}
    assert (b / "model.int8-cpu.onnx").read_bytes() == cpu_model
    assert m["precisions"]["int8-cpu"]["calibration"]["method"] == "minmax"
    assert m["precisions"]["int8-tensorrt"]["calibration"]["method"] == "percentile"
    report = json.loads((b / "calibration_report.json").read_text())
    assert set(report["targets"]) == {"int8-tensorrt"} and set(report["earlier_targets"]) == {"int8-cpu"}
    assert report["earlier_targets"]["int8-cpu"]["calibration"]["method"] == "minmax"
    assert "int8-cpu: kept from the calibration of" in (b / "calibration_summary.txt").read_text()


@pytest.mark.slow
def test_patch_features_pass_the_gate(tiny_run, tmp_path):
    """The patch detector's projected PatchCore features (a named output of the ONNX model) through
    INT8: the gate passes on them and the INT8 threshold is re-derived from the cross-fitted scores."""
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.fit import FitConfig, fit_run

    run, b = tmp_path / "run", tmp_path / "bundle"
    shutil.copytree(tiny_run, run)
    fit_run(FitConfig(run=str(run), data="digits", normal_label="0", detector="patch", coreset=256, target_fpr=0.15,
                      device="cpu"))
    export_bundle(ExportConfig(run=str(run), out=str(b), verify_images=32))
    report = calibrate_bundle(CalibrateConfig(bundle=str(b), target="cpu", method="minmax", num_images=48,
                                              holdout_images=120))
    r = report["targets"]["int8-cpu"]
    assert r["passed"] and r["metrics"]["patches_cosine_mean"] >= 0.99
    t32 = Threshold.from_dict(Bundle.load(b).threshold("fp32"))
    t8 = Threshold.from_dict(Bundle.load(b).threshold("int8-cpu"))
    assert t8.n_holdout == t32.n_holdout and abs(r["threshold_shift"]) < 0.5
