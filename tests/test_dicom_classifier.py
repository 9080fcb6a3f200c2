"""The DICOM consumers with a classifier bundle: ``triage --dicom-out`` and the DICOM node write a
Comprehensive SR per instance with the predicted class, its probability and the positive class's
probability; a head alone decides on that probability (no anomaly score, no false-positive rate, no
overlay, having no maps), a head beside a detector adds the class to the anomaly findings.

Real pydicom/highdicom objects read back; the node runs in-process with real associations on loopback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from requires import require

require("torch")

from conftest import TINY_POSITIVE  # noqa: E402
from dicom_factory import write_dicom  # noqa: E402
from dicom_net import SR_CLASS, Receiver, sr_content, store  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.medical.audit_log import read_audit_log  # noqa: E402
from edgessl.edge_runtime.medical.dicom_node import DicomNode, NodeConfig  # noqa: E402
from edgessl.edge_runtime.medical.triage import TriageConfig, run_triage  # noqa: E402
from edgessl.edge_runtime.pipeline import Pipeline  # noqa: E402
from pydicom import dcmread  # noqa: E402


def studies(folder: Path, n: int) -> list[Path]:
    """``n`` single-image studies: digits test images at 40 px as 12-bit CR."""
    ds = open_dataset("digits", "test")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = cv2.resize(ds.image(i), (40, 40), interpolation=cv2.INTER_CUBIC).astype(np.int64) * 16
        paths.append(folder / f"study{i:03d}.dcm")
        write_dicom(paths[-1], img, bits_stored=12)
    return paths


def _triage(bundle: Path, tmp_path: Path, n: int) -> tuple[dict, list, dict]:
    """``triage --dicom-out`` of ``n`` studies: its summary, the objects written, the audit lines by instance."""
    files = studies(tmp_path / "in", n)
    summary = run_triage(TriageConfig(bundle=str(bundle), source=[str(f) for f in files], out=str(tmp_path / "t"),
                                      dicom_out=str(tmp_path / "dicom"), backend="ort-cpu", progress=False))
    objects = [dcmread(p) for p in sorted((tmp_path / "dicom").glob("*.dcm"))]
    lines = {e["instance_uid"]: e for e in read_audit_log(tmp_path / "t" / "audit.jsonl") if e.get("instance_uid")}
    return summary, objects, lines


def _probabilities(bundle: Path, folder: Path, instance_uid: str) -> dict:
    """The pipeline's class probabilities of the study of ``folder`` whose instance is ``instance_uid``."""
    from edgessl.edge_runtime.medical.dicom import read_dicom

    path = next(f for f in folder.glob("*.dcm") if dcmread(f).SOPInstanceUID == instance_uid)
    return Pipeline.load(bundle, backend="ort-cpu").score(read_dicom(path)[1][0]).probabilities


def _class_findings(result: dict, p: dict) -> None:
    assert result["Predicted class"] == max(p, key=p.get)
    assert result["Predicted class probability"] == pytest.approx(max(p.values()), abs=1e-5)


def test_a_head_alone_states_class_and_probabilities_and_no_anomaly_findings(tiny_classifier_bundle, tmp_path):
    summary, objects, lines = _triage(tiny_classifier_bundle, tmp_path, 3)
    assert summary["n_dicom_objects"] == len(objects) == 3 and all(d.Modality == "SR" for d in objects)  # no overlay
    for sr in objects:
        c = sr_content(sr)
        [result] = c["Image result"]
        uid = result["Source of Measurement"][1]
        assert c["Operating point"] == "positive-class probability threshold" and c["Positive class"] == TINY_POSITIVE
        assert c["Decision threshold"] == c["Raw decision threshold"] == 0.5
        assert "Target false-positive rate" not in c and "Anomaly score" not in result
        assert "Raw anomaly score" not in result
        p = _probabilities(tiny_classifier_bundle, tmp_path / "in", uid)
        _class_findings(result, p)
        assert result["Positive class probability"] == pytest.approx(p[TINY_POSITIVE], abs=1e-5)
        assert result["Positive class probability"] == pytest.approx(lines[uid]["raw_score"], abs=1e-6)
        assert result["Triage decision"] == ("Abnormal" if p[TINY_POSITIVE] >= 0.5 else "Normal")


def test_a_head_beside_a_detector_adds_the_class_to_the_anomaly_findings(tiny_detector_classifier_bundle, tmp_path):
    _, objects, lines = _triage(tiny_detector_classifier_bundle, tmp_path, 2)
    srs = [d for d in objects if d.Modality == "SR"]
    assert len(srs) == 2
    for sr in srs:
        c = sr_content(sr)
        [result] = c["Image result"]
        uid = result["Source of Measurement"][1]
        assert c["Operating point"] == "normal-only threshold" and "Target false-positive rate" in c
        assert "Positive class" not in c and "Positive class probability" not in result  # the bundle names none
        assert result["Raw anomaly score"] == pytest.approx(lines[uid]["raw_score"])
        _class_findings(result, _probabilities(tiny_detector_classifier_bundle, tmp_path / "in", uid))


def test_the_node_sends_a_head_alones_sr(tiny_classifier_bundle, tmp_path):
    pacs = Receiver()
    node = DicomNode(NodeConfig(bundle=str(tiny_classifier_bundle), out=str(tmp_path / "node"), port=0,
                                bind="127.0.0.1", backend="ort-cpu", forward=f"PACS@127.0.0.1:{pacs.port}"))
    node.start()
    try:
        files = studies(tmp_path / "in", 2)
        assert store(files, node.port) == [0, 0]
        pacs.wait_for(2)
    finally:
        summary = node.stop()  # drains every send
        pacs.close()
    got = pacs.received
    assert summary["scored"] == 2 and summary["acknowledged"] == 2
    assert [d.SOPClassUID for d in got] == [SR_CLASS, SR_CLASS]  # no overlay: a head has no maps
    for sr in got:
        [result] = sr_content(sr)["Image result"]
        p = _probabilities(tiny_classifier_bundle, tmp_path / "in", result["Source of Measurement"][1])
        _class_findings(result, p)
        assert result["Positive class probability"] == pytest.approx(p[TINY_POSITIVE], abs=1e-5)
