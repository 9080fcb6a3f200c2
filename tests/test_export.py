"""Export: ONNX Runtime matches PyTorch on real images, the bundle is sealed, and failures write nothing."""

import json
import shutil

import numpy as np
import pytest

from requires import require

require("torch")

from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.bundle import Bundle  # noqa: E402
from edgessl.edge_runtime.files import file_sha256  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.export.bundle_writer import ExportConfig, export_bundle, read_run, verification_images  # noqa: E402


def test_onnx_matches_pytorch_on_real_images(tiny_run, tiny_bundle):
    import onnxruntime as ort

    from edgessl.export.verify import verify_export
    from edgessl.train.feature_model import FeatureModel

    backbone, spec, _, detector, threshold, _ = read_run(tiny_run)
    batch, _ = verification_images("digits", spec, 100)  # real digits test images, runtime preprocessing
    check = verify_export(FeatureModel(backbone), tiny_bundle / "model.onnx", batch, detector, threshold)
    assert check.passed and check.images == len(batch) >= 90
    assert check.outputs["embedding"]["rel"] <= 1e-4 and check.scores["rel"] <= 1e-4
    assert check.decision_flips == 0
    recorded = Bundle.load(tiny_bundle).manifest["model"]["verification"]
    assert recorded["passed"] and recorded["outputs"]["embedding"]["rel"] <= 1e-4 and recorded["decision_flips"] == 0
    sess = ort.InferenceSession(str(tiny_bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 5):  # dynamic batch
        assert sess.run(["embedding"], {"input": batch[:n]})[0].shape == (n, 512)


def test_bundle_describes_itself(tiny_run, tiny_bundle):
    b = Bundle.load(tiny_bundle)
    m = b.manifest
    assert set(m["files"]) >= {"model.onnx", "detector/detector.json", "detector/detector.npz"}
    assert m["model"]["opset"] == 17 and m["model"]["input"]["shape"] == ["batch", 1, 16, 16]
    assert m["model"]["outputs"] == {"embedding": ["batch", 512], "anomaly_score": ["batch"]}
    assert m["model"]["scoring"]["in_graph"]
    assert m["detector"]["kind"] == "knn" and m["detector"]["normal_label"] == "0"
    fit_threshold = json.loads((tiny_run / "detector" / "threshold.json").read_text())
    assert b.threshold("fp32") == fit_threshold
    assert m["preprocess"]["image_size"] == 16
    assert m["provenance"]["checkpoint_sha256"] == file_sha256(tiny_run / "model.safetensors")
    assert m["provenance"]["training"]["method"] == "simclr"


def test_altered_file_is_refused(tiny_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    data = bytearray((b / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(EdgesslError, match="does not match its sha256"):
        Bundle.load(b)


def test_the_scoring_record_is_sealed(tiny_bundle, tmp_path):
    """Switching the device to the numpy path (or any change to what the graph is said to compute)
    by editing the manifest breaks its seal."""
    b = shutil.copytree(tiny_bundle, tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    del m["model"]["outputs"]["anomaly_score"]
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgesslError, match="edited after it was sealed"):
        Bundle.load(b)


def test_failure_mid_export_leaves_old_bundle_intact(tiny_run, tiny_bundle, tmp_path, monkeypatch):
    import edgessl.export.verify as verify

    old = tmp_path / "b"
    shutil.copytree(tiny_bundle, old)
    before = {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()}

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash during verification")

    monkeypatch.setattr(verify, "verify_export", crash)
    with pytest.raises(RuntimeError, match="simulated"):
        export_bundle(ExportConfig(run=str(tiny_run), out=str(old), verify_images=8, force=True))
    with pytest.raises(RuntimeError, match="simulated"):
        export_bundle(ExportConfig(run=str(tiny_run), out=str(tmp_path / "new"), verify_images=8))
    assert {p.name: p.read_bytes() for p in old.iterdir() if p.is_file()} == before
    Bundle.load(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]  # no new bundle, no staging directory left


def test_failed_verification_writes_nothing(tiny_run, tmp_path, monkeypatch):
    import edgessl.export.verify as verify

    real = verify.verify_export  # the real check at a zero tolerance, which float rounding cannot meet
    monkeypatch.setattr(verify, "verify_export", lambda *a, **k: real(*a, **{**k, "tolerance": 0.0}))
    with pytest.raises(EdgesslError, match="does not match PyTorch and the numpy detector"):
        export_bundle(ExportConfig(run=str(tiny_run), out=str(tmp_path / "b"), verify_images=8))
    assert not any(tmp_path.iterdir())


def test_bad_input(tiny_run, tiny_bundle, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    with pytest.raises(EdgesslError, match="already exists"):
        export_bundle(ExportConfig(run=str(run), out=str(tiny_bundle)))
    with pytest.raises(EdgesslError, match="opset 11"):
        export_bundle(ExportConfig(run=str(run), out=str(tmp_path / "b"), opset=11))
    shutil.rmtree(run / "detector")
    with pytest.raises(EdgesslError, match="edgessl fit"):
        export_bundle(ExportConfig(run=str(run), out=str(tmp_path / "b")))
    (run / "model.safetensors").unlink()
    with pytest.raises(EdgesslError, match="model.safetensors"):
        export_bundle(ExportConfig(run=str(run), out=str(tmp_path / "b")))
    assert not (tmp_path / "b").exists()


def test_cli_export_reports_errors_in_one_line(tmp_path, capsys):
    assert main(["export", "--run", str(tmp_path / "nope"), "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a run directory" in err[0]


def test_cli_export_writes_a_bundle(tiny_run, tmp_path, capsys):
    assert main(["export", "--run", str(tiny_run), "--out", str(tmp_path / "b"), "--verify-images", "16", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["verification"]["passed"] and out["verification"]["decision_flips"] == 0
    assert np.isclose(Bundle.load(tmp_path / "b").manifest["model"]["verification"]["images"], 16)


@pytest.mark.parametrize("kind", ["patch", "combined", "gaussian"])
def test_every_detector_is_scored_in_the_exported_graph(kind, tiny_run, tmp_path):
    """The model outputs the detector's score (and map), verified at export against the numpy detector."""
    from edgessl.train.fit import FitConfig, fit_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    fit_run(FitConfig(run=str(run), data="digits", normal_label="0", detector=kind,
                      coreset=256 if kind == "patch" else None, target_fpr=0.15,
                      device="cpu"))
    m = export_bundle(ExportConfig(run=str(run), out=str(tmp_path / "b"), verify_images=16))
    maps = kind != "gaussian"
    assert m["detector"]["kind"] == kind and m["model"]["scoring"]["in_graph"]
    with_maps = {"patches", "anomaly_map"} if maps else set()
    assert set(m["model"]["outputs"]) == {"embedding", "anomaly_score"} | with_maps
    check = m["model"]["verification"]
    assert check["scores"]["rel"] <= 1e-4 and check["decision_flips"] == 0  # the graph's against numpy's
    if maps:
        _, _, h, w = m["model"]["outputs"]["patches"]
        assert m["model"]["outputs"]["anomaly_map"] == ["batch", h, w]
        assert check["outputs"]["patches"]["rel"] <= 1e-4 and check["maps"]["rel"] <= 1e-4
