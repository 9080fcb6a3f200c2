"""The TensorRT path end to end on the strict stand-in of TensorRT 10.x and 11.x (tests/fake_tensorrt.py):
``build-engine``, engine selection, profile limits, batch splitting, DLA, each engine's own threshold,
``auto``'s fallback, the signed bundle kept signed, ONNX Runtime's TensorRT provider options, and a
classifier bundle's engine (a head alone, a head beside a detector) checked by its accuracy.

Every test runs on both lines (10.3 as on JetPack 6, 11.4.1 as on JetPack 7 with an AGX Orin, which
has DLA cores again). Real bundles (tests/runtime_bundle.py: a conv model fitted on digits; the
classifier ones are the shared fixtures of tests/conftest.py), real ONNX Runtime; the stand-in
"runs" an engine with ONNX Runtime on the ONNX it was built from.
"""

from __future__ import annotations

import shutil
import sys

import numpy as np
import pytest

from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.pipeline import Pipeline
from edgessl.edge_runtime.thresholds import Threshold
from edgessl.export.config import EngineConfig
from edgessl.export.engine_builder import build_engine
from fake_tensorrt import engine_model, engine_settings, install
from runtime_bundle import make_bundle

VERSIONS = {"trt10": "10.3.0.30", "trt11": "11.4.1.3"}
INPUT = [1, 16, 16]  # the runtime bundle's C x H x W


@pytest.fixture(params=list(VERSIONS), scope="module")
def line(request) -> str:
    return request.param


@pytest.fixture
def trt(line, monkeypatch):
    return install(monkeypatch, VERSIONS[line])


@pytest.fixture(scope="module")
def base_bundle(tmp_path_factory):
    """An fp32 bundle whose model scores itself (as ``edgessl export`` writes it) and its INT8
    (TensorRT target) calibration, made once."""
    from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle

    b = make_bundle(tmp_path_factory.mktemp("trt") / "bundle", "knn", graph_scores=True)
    calibrate_bundle(CalibrateConfig(bundle=str(b), target="tensorrt", method="minmax", num_images=32,
                                     holdout_images=60))
    return b


@pytest.fixture
def bundle(base_bundle, tmp_path):
    return shutil.copytree(base_bundle, tmp_path / "bundle")


def _build(bundle, **kw):
    return build_engine(EngineConfig(bundle=str(bundle), holdout_images=40, **kw))


def _images(n: int) -> list[np.ndarray]:
    ds = open_dataset("digits", "test")
    return [ds.image(i) for i in range(n)]


def test_int8_engine_is_strongly_typed_checked_and_kept_beside_the_base(trt, line, bundle):
    before = (bundle / "manifest.json").read_bytes()
    entry = _build(bundle, precision="int8")
    assert (bundle / "manifest.json").read_bytes() == before  # the base bundle is not changed
    b = Bundle.load(bundle)
    assert [e["key"] for e in b.engines] == [entry["key"]] and (bundle / entry["file"]).is_file()
    s = engine_settings((bundle / entry["file"]).read_bytes())
    assert s["strongly_typed"] and s["builder_flags"] == []  # explicit quantization: no precision flag
    assert s["network_flags"] == (["STRONGLY_TYPED"] if line == "trt10" else [])  # always strong on 11
    assert s["profiles"] == [{"input": [[1, *INPUT], [1, *INPUT], [16, *INPUT]]}] and s["device"] == "GPU"
    assert entry["source_model"] == "model.int8-tensorrt.onnx" and entry["preflight"]["passed"]
    c = entry["comparison"]
    assert c["images"] > 40 and c["embedding_cosine_mean"] > 0.9999 and c["decision_agreement"] > 0.9
    t = Threshold.from_dict(entry["threshold"])
    t32 = Threshold.from_dict(b.threshold("fp32"))
    assert (t.requested_target_fpr or t.target_fpr, t.confidence) == (t32.target_fpr, t32.confidence)


def test_fp16_engine_per_version_and_its_own_threshold(trt, line, bundle):
    entry = _build(bundle, precision="fp16")
    s = engine_settings((bundle / entry["file"]).read_bytes())
    if line == "trt10":  # weakly typed with the FP16 flag
        assert not s["strongly_typed"] and s["builder_flags"] == ["FP16"] and s["fp16_emulated"]
    else:  # no FP16 flag in 11: the model converted to fp16, strongly typed
        import onnx

        assert s["strongly_typed"] and s["builder_flags"] == []
        proto = onnx.load_from_string(engine_model((bundle / entry["file"]).read_bytes()))
        assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)
    pipe = Pipeline.load(bundle, backend="tensorrt", precision="fp32")
    assert pipe.backend == "tensorrt" and pipe.precision_key == "engine-fp16"
    assert pipe.threshold_record.to_dict() == entry["threshold"]  # never the fp32 threshold, silently
    cpu = Pipeline.load(bundle, backend="ort-cpu", precision="fp32")
    images = _images(8)
    got = [r.raw_score for r in pipe.score_batch(images)]
    want = [r.raw_score for r in cpu.score_batch(images)]
    np.testing.assert_allclose(got, want, rtol=5e-3)
    assert all(r.precision == "engine-fp16" for r in pipe.score_batch(images[:2]))


def test_auto_takes_tensorrt_only_with_a_valid_engine_for_this_device(trt, line, bundle, monkeypatch):
    assert Pipeline.load(bundle, backend="auto").backend == "ort-cpu"  # TensorRT here, but no engine
    _build(bundle, precision="fp16")
    assert Pipeline.load(bundle, backend="auto").backend == "tensorrt"
    with pytest.raises(EdgesslError, match="no int8-cpu model"):  # no int8 engine: ONNX Runtime's CPU model
        Pipeline.load(bundle, backend="auto", precision="int8")
    install(monkeypatch, "10.4.0.1" if line == "trt10" else "11.5.0.1")  # TensorRT upgraded since the build
    assert Pipeline.load(bundle, backend="auto").backend == "ort-cpu"
    with pytest.raises(EdgesslError, match="built with TensorRT .*rebuild it"):
        Pipeline.load(bundle, backend="tensorrt")


def test_batches_are_split_at_the_profile_maximum(trt, bundle):
    _build(bundle, precision="int8", max_batch=4)
    pipe = Pipeline.load(bundle, backend="tensorrt", precision="int8")
    runner = pipe.runner
    assert (runner.min_batch, runner.max_batch) == (1, 4)
    assert not runner.context.set_input_shape("input", (5, *INPUT))  # outside the profile: refused, no raise
    out = runner.run(np.random.RandomState(0).randn(11, *INPUT).astype(np.float32))
    assert out["embedding"].shape == (11, 8) and out["patches"].shape == (11, 8, 8, 8)
    assert out["anomaly_score"].shape == (11,)  # the engine computes the score: the detector is in the graph
    images = _images(11)
    batch = [r.raw_score for r in pipe.score_batch(images)]
    single = [pipe.score(img).raw_score for img in images]
    np.testing.assert_allclose(batch, single, rtol=1e-5, atol=1e-6)


def test_dla_engine_has_a_fixed_batch_and_is_found_at_run_time(trt, line, bundle):
    entry = _build(bundle, precision="int8", dla_core=1, opt_batch=2)
    assert entry["key"].endswith("-dla1") and (entry["min_batch"], entry["opt_batch"], entry["max_batch"]) == (2, 2, 2)
    s = engine_settings((bundle / entry["file"]).read_bytes())
    assert s["profiles"] == [{"input": [[2, *INPUT]] * 3}]  # min = opt = max: DLA takes no dynamic dimension
    assert s["device"] == "DLA" and s["dla_core"] == 1 and s["layers_on_dla"] and "GPU_FALLBACK" in s["builder_flags"]
    if line == "trt10":  # DLA runs in FP16/INT8 mode: weakly typed with both flags
        assert not s["strongly_typed"] and {"FP16", "INT8"} <= set(s["builder_flags"])
    pipe = Pipeline.load(bundle, backend="tensorrt", precision="int8", dla_core=1)
    assert pipe.runner.engine.dla_core_used == 1 and "DLA core 1" in pipe.runner.providers[0]
    assert len(pipe.score_batch(_images(3))) == 3  # 2 + 1 padded to the fixed batch
    with pytest.raises(EdgesslError, match="no int8 TensorRT engine for DLA core 0"):
        Pipeline.load(bundle, backend="tensorrt", precision="int8", dla_core=0)
    with pytest.raises(EdgesslError, match="no int8 TensorRT engine for the GPU"):
        Pipeline.load(bundle, backend="tensorrt", precision="int8")
    with pytest.raises(EdgesslError, match="native tensorrt backend"):
        Pipeline.load(bundle, backend="ort-cpu", dla_core=1)


def test_tensorrt_11_before_11_4_has_no_dla(monkeypatch, bundle):
    install(monkeypatch, "11.1.0.7", dla_cores=0)
    with pytest.raises(EdgesslError, match="no DLA cores"):
        _build(bundle, precision="int8", dla_core=0)
    assert not (bundle / "engines").exists()


def test_signed_bundle_stays_signed_after_an_engine_build(trt, bundle, tmp_path, capsys):
    from edgessl.cli import main

    key = tmp_path / "signer"
    assert main(["keygen", "--out", str(key)]) == 0
    assert main(["sign", "--bundle", str(bundle), "--key", str(key)]) == 0
    assert main(["build-engine", "--bundle", str(bundle), "--precision", "int8", "--holdout-images", "40"]) == 0
    pub = f"{key}.pub"
    assert main(["bundle", "verify", "--bundle", str(bundle), "--public-key", pub]) == 0
    assert "engines delta (1 engines)" in capsys.readouterr().out
    pipe = Pipeline.load(bundle, backend="tensorrt", precision="int8", public_key=pub)
    assert pipe.backend == "tensorrt"
    extra = bundle / "engines" / "extra.engine"
    extra.write_bytes(b"x")
    with pytest.raises(EdgesslError, match="not listed in engines/engines.json"):
        Bundle.load(bundle)
    extra.unlink()
    engine = next((bundle / "engines").glob("*.engine"))
    engine.write_bytes(engine.read_bytes() + b"\0")
    with pytest.raises(EdgesslError, match="missing or altered"):
        Bundle.load(bundle)
    shutil.rmtree(bundle / "engines")
    (bundle / "engines").mkdir()
    with pytest.raises(EdgesslError, match="no engines.json"):
        Bundle.load(bundle)


def test_a_base_change_drops_the_engines_it_no_longer_matches(trt, bundle, capsys):
    from edgessl.edge_runtime.bundle_update import update_bundle

    _build(bundle, precision="fp16")
    update_bundle(bundle, lambda root, m: {**m, "provenance": {"changed": True}})
    assert "1 TensorRT engine(s)" in capsys.readouterr().err and not (bundle / "engines").exists()
    assert Bundle.load(bundle).engines == []


def test_an_edited_engines_record_is_refused(trt, bundle):
    import json

    _build(bundle, precision="fp16")
    path = bundle / "engines" / "engines.json"
    record = json.loads(path.read_text())
    record["engines"][0]["threshold"]["raw_threshold"] *= 100
    path.write_text(json.dumps(record))
    with pytest.raises(EdgesslError, match="edited after it was sealed"):
        Bundle.load(bundle)


@pytest.mark.parametrize("outside", ["../model.onnx", "engines/../model.onnx", "/etc/passwd"])
def test_a_resealed_engines_record_naming_a_file_outside_engines_is_refused(trt, bundle, outside):
    """Someone who can write the bundle can re-seal the delta: it still never names a file but its own."""
    import json

    from edgessl.edge_runtime.bundle import seal_digest

    _build(bundle, precision="fp16")
    path = bundle / "engines" / "engines.json"
    record = json.loads(path.read_text())
    engine = record["engines"][0]["file"]
    record["files"][outside] = record["files"].pop(engine)
    record["engines"][0]["file"] = outside
    record["seal"] = {"sha256": seal_digest(record)}
    path.write_text(json.dumps(record))
    with pytest.raises(EdgesslError, match="outside engines/; refusing to load"):
        Bundle.load(bundle)


def test_build_engine_refuses_a_model_the_parser_would_not_take(trt, bundle, capsys):
    """A Q/DQ model with int32 biases (ONNX Runtime's default) is refused before the build, naming the node."""
    from dataclasses import replace

    from edgessl.calibration.collect_ranges import collect_stats, tensor_ranges
    from edgessl.calibration.qdq import TARGETS, pre_process, write_qdq
    from edgessl.cli import main
    from edgessl.edge_runtime.bundle_update import update_bundle

    def int32_biases(root, m):
        pre = root.parent / "pre.onnx"
        pre_process(root / "model.onnx", pre)
        ranges = tensor_ranges(collect_stats(pre, np.random.RandomState(0).randn(8, *INPUT).astype(np.float32),
                                             histograms=False), "minmax")
        write_qdq(pre, ranges, replace(TARGETS["tensorrt"], quantize_bias=True), root / "model.int8-tensorrt.onnx")
        pre.unlink()
        return m

    update_bundle(bundle, int32_biases)
    assert main(["build-engine", "--bundle", str(bundle), "--precision", "int8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "DequantizeLinear" in err[0] and "INT32" in err[0] and "[R4" in err[0]
    assert "node '" in err[0] and not (bundle / "engines").exists()


def test_an_engine_that_strays_from_onnxruntime_is_refused(trt, bundle, monkeypatch):
    from edgessl.edge_runtime.backends.tensorrt_native import TensorRTBackend

    run = TensorRTBackend.run
    monkeypatch.setattr(TensorRTBackend, "run", lambda self, x: {k: v + np.random.RandomState(0).randn(*v.shape)
                                                                 for k, v in run(self, x).items()})
    with pytest.raises(EdgesslError, match="stray from ONNX Runtime.*nothing was written"):
        _build(bundle, precision="fp16")
    assert not (bundle / "engines").exists()


def test_the_two_surfaces_differ_as_tensorrt_10_and_11_do(monkeypatch):
    t10 = install(monkeypatch, "10.3.0.30")
    assert int(t10.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1 and hasattr(t10.BuilderFlag, "FP16")
    t10.Builder(t10.Logger()).create_builder_config().int8_calibrator = None
    t11 = install(monkeypatch, "11.4.1.3")
    assert int(t11.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
    for gone in ("FP16", "INT8", "OBEY_PRECISION_CONSTRAINTS"):
        assert not hasattr(t11.BuilderFlag, gone)
    assert not hasattr(t11, "IInt8EntropyCalibrator2") and not hasattr(t11.NetworkDefinitionCreationFlag,
                                                                       "EXPLICIT_BATCH")
    config = t11.Builder(t11.Logger()).create_builder_config()
    with pytest.raises(AttributeError):
        config.int8_calibrator = None
    with pytest.raises(TypeError):
        config.set_flag(t10.BuilderFlag.GPU_FALLBACK)  # another version's enum
    with pytest.raises(AttributeError):
        t11.Builder(t11.Logger()).platform_has_fast_fp16


def test_ort_tensorrt_provider_caches_its_engine_beside_the_bundle_with_explicit_profiles(bundle, monkeypatch):
    import edgessl.edge_runtime.pipeline as pipeline
    from edgessl.edge_runtime.backends import ort, select

    made = {}

    class Recorder:
        name, providers = "ort-tensorrt", ["TensorrtExecutionProvider"]

        def __init__(self, model, name, kind, opts):
            made.update(model=model, name=name, kind=kind, opts=opts)

    monkeypatch.setattr(select, "available_providers", lambda: ["TensorrtExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(pipeline, "OrtBackend", Recorder)
    pipe = Pipeline.load(bundle, backend="ort-tensorrt", precision="int8")
    opts, b = made["opts"], Bundle.load(bundle)
    assert made["name"] == "model.int8-tensorrt.onnx" and pipe.precision_key == "int8-tensorrt"
    assert made["model"] == (bundle / "model.int8-tensorrt.onnx").read_bytes()  # the verified bytes
    sha = b.manifest["files"]["model.int8-tensorrt.onnx"][:16]
    assert opts.engine_cache_dir == str(bundle.parent / ".bundle.cache" / "ort-tensorrt" / sha) and opts.int8
    provider = dict([p for p in ort._provider_list("ort-tensorrt", opts) if isinstance(p, tuple)][0:1])
    trt_options = provider["TensorrtExecutionProvider"]
    assert trt_options["trt_engine_cache_enable"] and trt_options["trt_engine_cache_path"] == opts.engine_cache_dir
    assert trt_options["trt_int8_enable"] and trt_options["trt_profile_min_shapes"] == "input:1x1x16x16"
    assert trt_options["trt_profile_opt_shapes"] == "input:1x1x16x16"
    assert trt_options["trt_profile_max_shapes"] == "input:16x1x16x16"
    Bundle.load(bundle)  # the cache folder is outside the sealed bundle


def test_what_is_missing_on_a_device_is_said_in_one_line(monkeypatch, tmp_path):
    from edgessl.edge_runtime.backends.select import select_backend
    from edgessl.export.engine_builder import _fp16_onnx
    from edgessl.export.tensorrt_preflight import preflight

    monkeypatch.setitem(sys.modules, "onnx", None)  # a device without the onnx package
    with pytest.raises(EdgesslError, match=r"pip install 'edgessl\[gpu\]'") as info:
        _fp16_onnx(b"")
    assert "\n" not in str(info.value)
    with pytest.raises(EdgesslError, match=r"preflight reads models with the onnx package"):
        preflight(tmp_path / "model.onnx")
    cudart = install(monkeypatch, "10.3.0.30") and sys.modules["cuda.bindings.runtime"]
    monkeypatch.setattr(cudart, "cudaGetDeviceCount", lambda: (35, 0))  # cuda-python for a newer driver
    with pytest.raises(EdgesslError, match="tensorrt is not available on this machine .CUDA reports no usable GPU"):
        select_backend("tensorrt")


def test_the_gpu_extras_install_on_jetpack_6_and_7():
    """cuda-python's major is the CUDA driver's: 12.x for JetPack 6 (CUDA 12.6), 13.x for JetPack 7."""
    import tomllib
    from pathlib import Path

    from packaging.requirements import Requirement

    extras = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]["optional-dependencies"]

    def spec(extra: str, name: str):
        return next(Requirement(r).specifier for r in extras[extra] if Requirement(r).name == name)

    assert "12.6.0" in spec("gpu", "cuda-python") and "13.0.0" not in spec("gpu", "cuda-python")
    assert "13.0.0" in spec("gpu-cuda13", "cuda-python") and "12.6.0" not in spec("gpu-cuda13", "cuda-python")
    for extra in ("gpu", "gpu-cuda13"):
        assert {"onnxruntime-gpu", "onnx"} <= {Requirement(r).name for r in extras[extra]}


@pytest.fixture
def classifier_bundle(tiny_classifier_bundle, tmp_path):
    return shutil.copytree(tiny_classifier_bundle, tmp_path / "classifier")


def test_a_head_only_engine_is_checked_by_its_accuracy_and_classifies(trt, classifier_bundle, capsys):
    """A bundle with a classifier head and no detector: the engine gives logits and probabilities,
    is judged on labelled test images (no threshold to re-derive), and the pipeline classifies with it."""
    import onnx

    from edgessl.cli import main

    assert main(["build-engine", "--bundle", str(classifier_bundle), "--precision", "fp16",
                 "--holdout-images", "60"]) == 0
    out = capsys.readouterr().out
    assert "threshold: none (no detector)" in out and "argmax agreement: " in out
    entry = Bundle.load(classifier_bundle).engines[-1]
    assert entry["threshold"] is None and entry["threshold_from"] is None
    c = entry["comparison"]
    assert c["images"] == 60 and c["class_images"] == 60 and c["normals_from"] == "none (no detector)"
    assert c["argmax_agreement"] >= 0.95 and abs(c["accuracy_change"]) <= 0.01
    assert c["accuracy_engine"] == pytest.approx(c["accuracy_onnx"] + c["accuracy_change"])
    assert "positive_auroc_change" in c and "probabilities_cosine_mean" in c and "decision_agreement" not in c
    engine = (classifier_bundle / entry["file"]).read_bytes()
    outputs = {o.name for o in onnx.load_from_string(engine_model(engine)).graph.output}
    assert {"logits", "probabilities"} <= outputs and engine_settings(engine)["profiles"][0]["input"][2][0] == 16
    pipe = Pipeline.load(classifier_bundle, backend="tensorrt")
    cpu = Pipeline.load(classifier_bundle, backend="ort-cpu")
    assert pipe.detector is None and pipe.precision_key == "engine-fp16" and pipe.threshold_record is None
    images = _images(6)
    got, want = pipe.score_batch(images), cpu.score_batch(images)
    for g, w in zip(got, want):
        assert g.score is None and g.is_anomaly is None and g.anomaly_map is None
        assert list(g.probabilities) == pipe.classes and sum(g.probabilities.values()) == pytest.approx(1, abs=1e-3)
        np.testing.assert_allclose(list(g.probabilities.values()), list(w.probabilities.values()), atol=5e-3)
    assert sum(g.class_name == w.class_name for g, w in zip(got, want)) >= 5


def test_a_head_only_engine_that_loses_accuracy_is_refused(trt, classifier_bundle, monkeypatch):
    from edgessl.edge_runtime.backends.tensorrt_native import TensorRTBackend

    run = TensorRTBackend.run

    def shifted(self, x):  # every image given the next class: the embedding intact, the answers wrong
        out = run(self, x)
        return {**out, "probabilities": np.roll(out["probabilities"], 1, axis=1)}

    monkeypatch.setattr(TensorRTBackend, "run", shifted)
    with pytest.raises(EdgesslError, match=r"accuracy change -0\.\d+ below -0\.01 .*nothing was written"):
        build_engine(EngineConfig(bundle=str(classifier_bundle), precision="fp16", holdout_images=40))
    assert not (classifier_bundle / "engines").exists()


def test_an_engine_of_a_bundle_with_a_detector_and_a_head_has_both_checks(trt, tiny_detector_classifier_bundle,
                                                                          tmp_path):
    b = shutil.copytree(tiny_detector_classifier_bundle, tmp_path / "both")
    entry = build_engine(EngineConfig(bundle=str(b), precision="fp16", holdout_images=40))
    c = entry["comparison"]
    assert entry["threshold"] is not None and c["decision_agreement"] > 0.9 and c["class_images"] == 40
    assert c["images"] > 40 and "positive_auroc_change" not in c  # no positive class; the normals' classes unread
    r = Pipeline.load(b, backend="tensorrt").score(_images(1)[0])
    assert r.score is not None and r.class_name in r.probabilities
