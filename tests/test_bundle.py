"""The bundle contract: sealing hashes every file, loading refuses what does not match."""

import json

import pytest

from edgessl.edge_runtime.bundle import MANIFEST_VERSION, Bundle, precision_key, seal
from edgessl.edge_runtime.errors import EdgesslError


@pytest.fixture
def bundle_dir(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"model bytes")
    (tmp_path / "detector").mkdir()
    (tmp_path / "detector" / "detector.json").write_text("{}")
    seal(tmp_path, {"precisions": {"fp32": {"model": "model.onnx"}}, "thresholds": {"fp32": {"raw": 1.0}}})
    return tmp_path


def test_seal_lists_every_file_and_load_verifies(bundle_dir):
    b = Bundle.load(bundle_dir)
    assert set(b.manifest["files"]) == {"model.onnx", "detector/detector.json"}
    assert b.model_name("fp32") == "model.onnx" and b.model_bytes("fp32") == (bundle_dir / "model.onnx").read_bytes()
    assert len(b.hash) == 64


def test_tampered_file_is_refused(bundle_dir):
    (bundle_dir / "model.onnx").write_bytes(b"model bytez")
    with pytest.raises(EdgesslError, match="does not match its sha256"):
        Bundle.load(bundle_dir)


def test_missing_file_is_refused(bundle_dir):
    (bundle_dir / "detector" / "detector.json").unlink()
    with pytest.raises(EdgesslError, match="missing"):
        Bundle.load(bundle_dir)


def test_other_version_and_non_bundle_are_refused(bundle_dir, tmp_path_factory):
    m = json.loads((bundle_dir / "manifest.json").read_text())
    m["manifest_version"] = MANIFEST_VERSION - 1
    (bundle_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgesslError, match="re-export"):
        Bundle.load(bundle_dir)
    with pytest.raises(EdgesslError, match="not a bundle"):
        Bundle.load(tmp_path_factory.mktemp("empty"))


def test_missing_precision_and_threshold_name_what_exists(bundle_dir):
    b = Bundle.load(bundle_dir)
    with pytest.raises(EdgesslError, match="calibrate"):
        b.model_name("int8-cpu")
    with pytest.raises(EdgesslError, match="has: fp32"):
        b.threshold("int8-tensorrt")


def test_precision_keys():
    assert precision_key("fp32", "tensorrt") == "fp32"
    assert precision_key("int8", "ort-cpu") == "int8-cpu"
    assert precision_key("int8", "ort-tensorrt") == "int8-tensorrt"
    with pytest.raises(EdgesslError):
        precision_key("int4", "ort-cpu")
