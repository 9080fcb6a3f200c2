"""``edgessl export`` of a fine-tuned run: the classifier head in the graph (``logits``,
``probabilities``) checked against PyTorch's softmax, the manifest's ``classifier`` section
(classes, positive class, provenance, sealed), a run with both a detector and a head, and the
bad input of a head (one line, exit 2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from requires import require

torch = require("torch")

from conftest import TINY_DATA, TINY_POSITIVE  # noqa: E402
from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.backends.ort import cpu_session, run_batches  # noqa: E402
from edgessl.edge_runtime.bundle import Bundle  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.pipeline import Pipeline  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.edge_runtime.preprocess import PreprocessSpec  # noqa: E402
from edgessl.export.bundle_writer import verification_images  # noqa: E402
from edgessl.train.checkpoint import load_model  # noqa: E402
from edgessl.train.finetune import check_labels, load_head  # noqa: E402


def test_exported_probabilities_are_pytorchs_softmax(tiny_classifier_run, tiny_classifier_bundle):
    bundle = Bundle.load(tiny_classifier_bundle)
    spec = PreprocessSpec.from_dict(bundle.manifest["preprocess"])
    x, _ = verification_images(TINY_DATA, spec, 50)
    got = run_batches(cpu_session(bundle.model_bytes("fp32")), x)
    backbone, _, _ = load_model(tiny_classifier_run)
    head, classes = load_head(tiny_classifier_run)
    with torch.no_grad():
        logits = head(backbone.eval()(torch.from_numpy(x)))
    np.testing.assert_allclose(got["logits"], logits.numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got["probabilities"], torch.softmax(logits, 1).numpy(), atol=1e-5)
    np.testing.assert_allclose(got["probabilities"].sum(1), 1.0, atol=1e-5)
    assert bundle.manifest["model"]["outputs"]["probabilities"] == ["batch", len(classes)]
    check = bundle.manifest["model"]["verification"]
    assert check["passed"] and check["outputs"]["probabilities"]["rel"] <= 1e-4


def test_manifest_records_classes_positive_class_and_provenance(tiny_classifier_run, tiny_classifier_bundle):
    m = Bundle.load(tiny_classifier_bundle).manifest
    summary = json.loads((tiny_classifier_run / "finetune_summary.json").read_text())
    c = m["classifier"]
    assert c["classes"] == summary["classes"] and c["positive_class"] == TINY_POSITIVE
    for key in ("label_fraction", "seed", "labelled_set_sha256", "labelled_images", "mode"):
        assert c["provenance"][key] == summary[key]
    assert len(c["provenance"]["labelled_set_sha256"]) == 64
    assert "detector" not in m and "thresholds" not in m  # a head, no detector


def test_classifier_section_is_sealed(tiny_classifier_bundle, tmp_path):
    b = tmp_path / "b"
    shutil.copytree(tiny_classifier_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    m["classifier"]["positive_class"] = "0"
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(EdgesslError, match="edited after it was sealed"):
        Bundle.load(b)


def test_a_run_with_detector_and_head_exports_both(tiny_detector_classifier_bundle):
    m = Bundle.load(tiny_detector_classifier_bundle).manifest
    assert sorted(m["model"]["outputs"]) == ["anomaly_score", "embedding", "logits", "probabilities"]
    assert m["detector"]["kind"] == "knn" and "fp32" in m["thresholds"]
    assert m["classifier"]["positive_class"] is None
    check = m["model"]["verification"]
    assert check["passed"] and check["decision_flips"] == 0
    r = Pipeline.load(tiny_detector_classifier_bundle, backend="ort-cpu").score(open_dataset(TINY_DATA, "test").image(0))
    assert r.score is not None and isinstance(r.is_anomaly, bool) and r.class_name in m["classifier"]["classes"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_wrong_positive_class_is_one_line_exit_2(tiny_classifier_run, tiny_run, tmp_path, capsys):
    assert main(["export", "--run", str(tiny_classifier_run), "--out", str(tmp_path / "b"),
                 "--positive-class", "pneumonia"]) == 2
    assert "--positive-class 'pneumonia' is not a class" in _one_line_error(capsys)
    assert main(["export", "--run", str(tiny_run), "--out", str(tmp_path / "b"), "--positive-class", "1"]) == 2
    assert "has no classifier head" in _one_line_error(capsys)
    assert not (tmp_path / "b").exists()


def test_a_head_for_another_backbone_is_one_line_exit_2(tiny_classifier_run, tmp_path, capsys):
    from safetensors.torch import save_file

    run = tmp_path / "run"
    shutil.copytree(tiny_classifier_run, run)
    save_file({"weight": torch.zeros(10, 64), "bias": torch.zeros(10)}, str(run / "head.safetensors"))
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "b")]) == 2
    assert "a head for another backbone" in _one_line_error(capsys)


def test_finetune_refuses_labels_of_one_class_or_an_empty_class():
    with pytest.raises(EdgesslError, match="every training label is one class"):
        check_labels(np.zeros(20, np.int64), ["normal", "pneumonia"], "x")
    with pytest.raises(EdgesslError, match="class 'c' has no training image"):
        check_labels(np.repeat([0, 1], 5), ["a", "b", "c"], "x")
    check_labels(np.repeat([0, 1], 5), ["a", "b"], "x")


@pytest.mark.parametrize("train_labels,message", [
    ([0] * 12, "every training label is one class"),
    ([0] * 6 + [2] * 6, "class '1' has no training image"),
])
def test_finetune_bad_labels_are_one_line_exit_2(tiny_run, tmp_path, capsys, train_labels, message):
    rng = np.random.RandomState(0)
    data = tmp_path / "labels.npz"
    np.savez(data, train_images=rng.randint(0, 255, (12, 16, 16), np.uint8), train_labels=np.array(train_labels),
             val_images=rng.randint(0, 255, (4, 16, 16), np.uint8), val_labels=np.zeros(4, np.int64),
             test_images=rng.randint(0, 255, (4, 16, 16), np.uint8), test_labels=np.zeros(4, np.int64))
    assert main(["finetune", "--run", str(tiny_run), "--data", str(data), "--linear", "--device", "cpu",
                 "--out", str(tmp_path / "ft")]) == 2
    assert message in _one_line_error(capsys)
    assert not (tmp_path / "ft").exists()


def test_bundle_inspect_shows_the_classifier(tiny_classifier_bundle, capsys):
    assert main(["bundle", "inspect", "--bundle", str(tiny_classifier_bundle), "--json"]) == 0
    c = json.loads(capsys.readouterr().out)["classifier"]
    assert c["positive_class"] == TINY_POSITIVE and c["label_fraction"] == 0.1 and len(c["classes"]) == 10


def test_a_head_only_export_reports_only_what_it_verified(tiny_classifier_run, tmp_path, capsys):
    assert main(["export", "--run", str(tiny_classifier_run), "--out", str(tmp_path / "b"),
                 "--verify-images", "16"]) == 0
    line = capsys.readouterr().out
    assert "verified on 16 images (largest relative error" in line
    assert "scores" not in line and "decision flips" not in line  # no detector: nothing scored to check
