"""TensorRT parts: engine records and the refusal of stale/foreign engines.

Building an engine needs TensorRT and a GPU; those tests (an anomaly bundle, a classifier head alone) skip
with the reason when they are absent.
"""

import pytest

from edgessl.edge_runtime.engines import check_engine, engine_key, select_engine, upsert_engine
from edgessl.edge_runtime.errors import EdgesslError

SHA = "ab" * 32


def _entry(**kw):
    e = {"key": engine_key("10.3.0.30", "8.7", "int8", SHA), "file": "engines/e.engine", "tensorrt_version": "10.3.0",
         "compute_capability": "8.7", "precision": "int8", "source_model": "model.int8-tensorrt.onnx",
         "source_sha256": SHA, "dla_core": None}
    return {**e, **kw}


def test_engine_key_names_what_it_was_built_with():
    assert engine_key("10.3.0.30", "8.7", "int8", SHA) == "trt10.3.0-sm87-int8-abababababab"
    assert engine_key("11.4.1", "11.0", "fp16", SHA, dla_core=1).endswith("-dla1")


def test_stale_or_foreign_engine_is_refused():
    check_engine(_entry(), "10.3.0.30", "8.7", SHA)  # same TensorRT (build number aside), same GPU, same model
    with pytest.raises(EdgesslError, match="TensorRT 10.3.0; this device has TensorRT 10.7.0"):
        check_engine(_entry(), "10.7.0", "8.7", SHA)
    with pytest.raises(EdgesslError, match="compute capability 8.7; this GPU is 8.9"):
        check_engine(_entry(), "10.3.0", "8.9", SHA)
    with pytest.raises(EdgesslError, match="stale"):
        check_engine(_entry(), "10.3.0", "8.7", "cd" * 32)


def test_select_engine_from_records():
    files = {"model.int8-tensorrt.onnx": SHA}
    engines = upsert_engine([], _entry())
    engines = upsert_engine(engines, _entry(key="other", tensorrt_version="10.7.0"))
    engines = upsert_engine(engines, _entry())  # same key again: replaced, not duplicated
    engines = upsert_engine(engines, _entry(key="dla", dla_core=1))
    assert len(engines) == 3
    assert select_engine(engines, files, "10.3.0", "8.7", "int8")["key"] == _entry()["key"]
    assert select_engine(engines, files, "10.7.0", "8.7", "int8")["key"] == "other"
    assert select_engine(engines, files, "10.3.0", "8.7", "int8", dla_core=1)["key"] == "dla"
    with pytest.raises(EdgesslError, match="no int8 TensorRT engine for DLA core 0.*--dla-core 0"):
        select_engine(engines, files, "10.3.0", "8.7", "int8", dla_core=0)
    with pytest.raises(EdgesslError, match="no fp16 TensorRT engine for the GPU"):
        select_engine(engines, files, "10.3.0", "8.7", "fp16")
    with pytest.raises(EdgesslError, match="TensorRT 10"):
        select_engine(engines, files, "11.4.1", "8.7", "int8")
    with pytest.raises(EdgesslError, match="stale"):  # re-calibrated since
        select_engine(engines, {"model.int8-tensorrt.onnx": "cd" * 32}, "10.3.0", "8.7", "int8")


def test_build_engine_without_tensorrt_says_what_to_install(tiny_bundle, capsys):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here; this test covers its absence")
    except ImportError:
        pass
    from edgessl.cli import main

    assert main(["build-engine", "--bundle", str(tiny_bundle), "--precision", "fp16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install tensorrt" in err[0]
    assert main(["build-engine", "--bundle", str(tiny_bundle), "--precision", "int8"]) == 2
    assert "edgessl calibrate" in capsys.readouterr().err  # no Q/DQ model yet


def test_build_engine_with_tensorrt(tiny_bundle, tmp_path):
    """The real thing, where TensorRT and a GPU exist: an fp16 engine built, checked against ONNX Runtime,
    kept in the engines delta, and run by the pipeline with its own threshold."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs NVIDIA's wheel or JetPack and a GPU)")
    import shutil

    from edgessl.edge_runtime.bundle import Bundle
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl.export.engine_builder import EngineConfig, build_engine

    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    entry = build_engine(EngineConfig(bundle=str(b), precision="fp16", max_batch=4, timing_cache=str(tmp_path / "t.cache")))
    assert Bundle.load(b).engines[-1]["key"] == entry["key"] and (b / entry["file"]).is_file()
    assert (tmp_path / "t.cache").is_file() and entry["comparison"]["embedding_cosine_mean"] >= 0.99
    pipe = Pipeline.load(b, backend="auto")
    assert pipe.backend == "tensorrt" and pipe.threshold_record.to_dict() == entry["threshold"]


def test_build_engine_with_tensorrt_for_a_head_only_bundle(tiny_classifier_bundle, tmp_path):
    """The real thing for a classifier head alone: the engine checked by its accuracy on labelled test
    images (no threshold), and its class probabilities those of ONNX Runtime."""
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs NVIDIA's wheel or JetPack and a GPU)")
    import shutil

    import numpy as np

    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl.export.engine_builder import EngineConfig, build_engine

    b = tmp_path / "b"
    shutil.copytree(tiny_classifier_bundle, b)
    entry = build_engine(EngineConfig(bundle=str(b), precision="fp16", max_batch=4))
    assert entry["threshold"] is None and entry["comparison"]["argmax_agreement"] >= 0.95
    image = open_dataset("digits", "test").image(0)
    got = Pipeline.load(b, backend="tensorrt").score(image)
    want = Pipeline.load(b, backend="ort-cpu").score(image)
    np.testing.assert_allclose(list(got.probabilities.values()), list(want.probabilities.values()), atol=1e-2)
