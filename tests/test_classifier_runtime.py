"""The runtime with a classifier bundle: ``Pipeline``'s ``Result`` carries the class and its
probabilities, ``run`` writes them into each record (a bundle with no detector scores no anomaly,
and says so), ``evaluate --bundle`` reports the classifier's metrics, ``triage`` ranks by the
positive class's probability; ``classification_report`` on a hand-made case."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from requires import require

require("torch")

from conftest import TINY_DATA, TINY_POSITIVE  # noqa: E402
from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.data.classification_report import classification_report  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.data.metrics import auroc  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.edge_runtime.pipeline import Pipeline  # noqa: E402


def test_classification_report_by_hand():
    y = np.array([0, 0, 1, 1, 2])
    p = np.array([[.8, .1, .1], [.2, .7, .1], [.1, .8, .1], [.3, .6, .1], [.1, .1, .8]])
    r = classification_report(y, p, ["a", "b", "c"], "b")
    assert r["accuracy"] == pytest.approx(4 / 5)
    assert r["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert r["balanced_accuracy"] == pytest.approx(2.5 / 3)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert r["positive_auroc"] == pytest.approx(auroc(y == 1, p[:, 1]))
    r = classification_report(np.array([0, 0]), p[:2], ["a", "b", "c"], "b")
    assert r["per_class_recall"]["c"] is None and r["positive_auroc"] is None


def test_pipeline_result_carries_class_and_probabilities(tiny_classifier_bundle):
    pipe = Pipeline.load(tiny_classifier_bundle, backend="ort-cpu")
    ds = open_dataset(TINY_DATA, "test")
    results = pipe.score_batch([ds.image(i) for i in range(8)])
    for r in results:
        assert list(r.probabilities) == pipe.classes and sum(r.probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert r.class_name == max(r.probabilities, key=r.probabilities.get)
        assert r.score is None and r.raw_score is None and r.is_anomaly is None and r.threshold is None
        assert r.to_dict()["class"] == r.class_name
    assert pipe.score(ds.image(3)).probabilities == pytest.approx(results[3].probabilities, abs=1e-6)


def _image_folder(folder, n: int):
    ds = open_dataset(TINY_DATA, "test")
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), ds.image(i))
    return folder


def test_run_writes_class_and_probabilities_into_each_record(tiny_classifier_bundle, tmp_path, capsys):
    images = _image_folder(tmp_path / "images", 5)
    out = tmp_path / "r.jsonl"
    assert main(["run", "--bundle", str(tiny_classifier_bundle), "--source", str(images), "--out", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 5 and all(r["error"] is None for r in records)
    for r in records:
        assert r["class"] == max(r["probabilities"], key=r["probabilities"].get)
        assert r["score"] is None and r["is_anomaly"] is None
    assert sum(summary["classes"].values()) == 5 and summary["anomalies"] == 0
    assert any("no anomaly detector" in n for n in summary["notes"])
    assert main(["run", "--bundle", str(tiny_classifier_bundle), "--source", str(images), "--overlays",
                 str(tmp_path / "ov")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no anomaly detector" in err[-1]


def test_evaluate_bundle_reports_the_classifier(tiny_classifier_bundle, capsys):
    assert main(["evaluate", "--bundle", str(tiny_classifier_bundle), "--json", "--no-linear-probe"]) == 0
    result = json.loads(capsys.readouterr().out)
    c = result["classification"]
    test = open_dataset(TINY_DATA, "test")
    pipe = Pipeline.load(tiny_classifier_bundle, backend="ort-cpu")
    results = pipe.score_batch([test.image(i) for i in range(len(test))])
    probs = np.array([list(r.probabilities.values()) for r in results])
    assert c["test_images"] == len(test) and np.sum(c["confusion_matrix"]) == len(test)
    assert c["accuracy"] == pytest.approx(float((probs.argmax(1) == test.labels).mean()))
    assert c["positive_class"] == TINY_POSITIVE
    assert c["positive_auroc"] == pytest.approx(auroc(test.labels == 3, probs[:, 3]))
    assert 0.3 < c["accuracy"] <= 1 and 0.3 < c["balanced_accuracy"] <= 1  # 10 classes: chance is 0.1
    assert result["detector"] is None and "auroc" not in result


def test_a_bundle_with_neither_detector_nor_classifier_is_refused(tiny_classifier_bundle, tmp_path):
    from edgessl.edge_runtime.bundle_update import update_bundle

    b = tmp_path / "b"
    shutil.copytree(tiny_classifier_bundle, b)
    update_bundle(b, lambda root, m: {k: v for k, v in m.items() if k != "classifier"})
    with pytest.raises(EdgesslError, match="no 'thresholds'|no threshold|no 'detector'"):
        Pipeline.load(b, backend="ort-cpu")


def test_triage_ranks_by_the_positive_class_probability(tiny_classifier_bundle, tmp_path, capsys):
    import csv

    images = _image_folder(tmp_path / "images", 12)
    assert main(["triage", "--bundle", str(tiny_classifier_bundle), "--source", str(images), "--out",
                 str(tmp_path / "t"), "--json"]) == 0
    pipe = Pipeline.load(tiny_classifier_bundle, backend="ort-cpu")
    rows = list(csv.DictReader((tmp_path / "t" / "worklist.csv").open()))
    assert len(rows) == 12 and [int(r["rank"]) for r in rows] == list(range(1, 13))
    for r in rows:
        p = pipe.score(cv2.imread(r["file"], cv2.IMREAD_UNCHANGED)).probabilities[TINY_POSITIVE]
        assert float(r["raw_score"]) == pytest.approx(p, abs=1e-6) and r["threshold"] == "0.5"
        assert r["decision"] == ("abnormal" if p >= 0.5 else "normal")
    assert [float(r["raw_score"]) for r in rows] == sorted((float(r["raw_score"]) for r in rows), reverse=True)


def test_operating_point_on_the_positive_class_probability(tiny_classifier_bundle, tmp_path, capsys):
    import csv

    b = tmp_path / "b"
    shutil.copytree(tiny_classifier_bundle, b)
    assert main(["operating-point", "--bundle", str(b), "--data", TINY_DATA, "--normal-label", "0",
                 "--sensitivity", "0.9", "--json"]) == 0
    point = json.loads(capsys.readouterr().out)["operating_point"]
    assert 0 <= point["raw_threshold"] <= 1 and point["threshold"] == point["raw_threshold"]
    assert point["sensitivity"] >= 0.9
    images = _image_folder(tmp_path / "images", 12)
    assert main(["triage", "--bundle", str(b), "--source", str(images), "--out", str(tmp_path / "t"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold_kind"] == "operating_point"
    for r in csv.DictReader((tmp_path / "t" / "worklist.csv").open()):
        abnormal = float(r["raw_score"]) >= point["raw_threshold"]
        assert r["decision"] == ("abnormal" if abnormal else "normal")

