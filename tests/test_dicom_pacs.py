"""The node between real parts: Orthanc (Debian's) as the PACS that sends studies through its REST
API's store-to-modality and receives the results, and dcmtk's ``echoscu``/``storescu`` as an
independent client. The results are read back from Orthanc and checked.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from dicom_factory import dcmtk_jpeg, recode, write_dicom
from dicom_net import SC_CLASS, SR_CLASS, sr_content
from orthanc import Orthanc, wait_until
from requires import require_binary
from test_dicom_node import config, events, studies, worklist
from edgessl.edge_runtime.medical.audit_log import verify_audit_log
from edgessl.edge_runtime.medical.dicom_node import DicomNode
from pydicom import dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.uid import JPEG2000, JPEG2000Lossless, JPEGLSLossless, JPEGLSNearLossless, RLELossless

N_STUDIES = 12


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from runtime_bundle import make_bundle

    return make_bundle(tmp_path_factory.mktemp("pacs") / "bundle", "patch")


@pytest.fixture
def orthanc(tmp_path):
    pacs = Orthanc(tmp_path / "orthanc")
    yield pacs
    pacs.close()


def test_orthanc_sends_12_studies_and_gets_12_srs_and_overlays_back_in_the_right_studies(bundle, orthanc, tmp_path):
    out = tmp_path / "node"
    node = DicomNode(config(bundle, out, ae_title="EDGESSL", allow_ae=[orthanc.aet],
                            forward=f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"))
    node.start()
    try:
        orthanc.add_modality("edgessl", "EDGESSL", node.port)
        assert orthanc.post("/modalities/edgessl/echo", {}) == {}
        uploaded = [orthanc.upload(f) for f in studies(tmp_path / "in", N_STUDIES)]
        study_ids = [u["ParentStudy"] for u in uploaded]
        orthanc.post("/modalities/edgessl/store", {"Resources": study_ids, "Synchronous": True})
        wait_until(lambda: all(len(orthanc.study_instances(s)) == 3 for s in study_ids))
    finally:
        node.stop()
    sources = [dcmread(DicomBytesIO(orthanc.file(u["ID"]))) for u in uploaded]
    triaged = {e["instance_uid"]: e for e in events(out, "triaged")}
    for u, study_id, source in zip(uploaded, study_ids, sources):
        objects = [dcmread(DicomBytesIO(orthanc.file(i["ID"]))) for i in orthanc.study_instances(study_id)
                   if i["ID"] != u["ID"]]
        assert sorted(str(o.SOPClassUID) for o in objects) == sorted([SR_CLASS, SC_CLASS])
        sr = next(o for o in objects if o.SOPClassUID == SR_CLASS)
        overlay = next(o for o in objects if o.SOPClassUID == SC_CLASS)
        assert sr.StudyInstanceUID == overlay.StudyInstanceUID == source.StudyInstanceUID
        [result] = sr_content(sr)["Image result"]
        assert result["Source of Measurement"][1] == source.SOPInstanceUID
        decision = triaged[source.SOPInstanceUID]
        assert result["Anomaly score"] == pytest.approx(decision["score"])
        assert result["Triage decision"] == decision["decision"].capitalize()
        assert overlay.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert verify_audit_log(out / "audit.jsonl") > 0
    associations = {e["association"]: e for e in events(out, "association_accepted")}
    assert {(e["calling_ae"], e["address"]) for e in associations.values()} == {(orthanc.aet, "127.0.0.1")}
    received = events(out, "instance_received")
    assert len(received) == N_STUDIES and {e["status"] for e in received} == {"stored"}
    assert all(e["association"] in associations and e["calling_ae"] == orthanc.aet for e in received)
    assert sorted((e["study_uid"], e["instance_uid"]) for e in received) == \
        sorted((s.StudyInstanceUID, s.SOPInstanceUID) for s in sources)
    sent = events(out, "result_sent")
    assert Counter(e["status"] for e in sent) == {"acknowledged": N_STUDIES}
    assert sorted(e["instance_uid"] for e in sent) == sorted(s.SOPInstanceUID for s in sources)
    assert [r["state"] for r in worklist(out)] == ["acknowledged"] * N_STUDIES


def _dcmtk(*programs: str) -> list[str]:
    """The paths of dcmtk's ``programs`` (not same-named Python programs of the venv)."""
    return [require_binary(p, reason="dcmtk is not installed (apt-get install dcmtk)") for p in programs]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120)


def test_dcmtk_echo_and_a_malformed_object_get_their_status_and_the_node_keeps_serving(bundle, tmp_path):
    echoscu, storescu = _dcmtk("echoscu", "storescu")
    out = tmp_path / "node"
    node = DicomNode(config(bundle, out))
    node.start()
    try:
        port = str(node.port)
        assert _run(echoscu, "-aet", "DCMTK", "-aec", "EDGESSL", "127.0.0.1", port).returncode == 0
        bad = tmp_path / "bad.dcm"
        ds = write_dicom(bad, np.zeros((32, 32)), bits_stored=12)
        ds.Rows = 64  # the pixel data holds 32 x 32: Rows x Columns contradicts its length
        ds.save_as(bad, enforce_file_format=True)
        run = _run(storescu, "-v", "-aet", "DCMTK", "-aec", "EDGESSL", "127.0.0.1", port, str(bad))
        assert run.returncode != 0 and "Store Response (Error: CannotUnderstand)" in run.stderr, run.stderr  # 0xC000
        good = studies(tmp_path / "in", 1)
        assert _run(storescu, "-aet", "DCMTK", "-aec", "EDGESSL", "127.0.0.1", port, str(good[0])).returncode == 0
    finally:
        node.stop()
    received = events(out, "instance_received")
    assert [e["status"] for e in received] == ["refused", "stored"]
    assert received[0]["instance_uid"] == ds.SOPInstanceUID and "pixel data is 2048 bytes" in received[0]["reason"]
    assert received[0]["calling_ae"] == "DCMTK"
    assert [r["status"] for r in worklist(out)] == ["scored"]


def test_every_compressed_transfer_syntax_crosses_the_wire_and_scores(bundle, tmp_path):
    """storescu proposes each file's own compressed transfer syntax (its -x option): the node accepts
    every syntax it can decode, spools the codestream as sent, and scores it."""
    storescu, _ = _dcmtk("storescu", "dcmcjpeg")
    native = studies(tmp_path / "native", 1)[0]
    rgb = tmp_path / "native" / "rgb.dcm"
    write_dicom(rgb, np.dstack([np.full((30, 30), v, np.uint8) for v in (30, 120, 220)]), photometric="RGB")
    files = {}  # file -> storescu's option proposing its syntax
    for name, ts, options, flag in [("rle", RLELossless, {}, "-xr"), ("jls", JPEGLSLossless, {}, "-xt"),
                                    ("jls_near", JPEGLSNearLossless, {"jls_error": 2}, "-xu"),
                                    ("j2k", JPEG2000Lossless, {}, "-xv"), ("j2k_lossy", JPEG2000, {"j2k_cr": [10]}, "-xw")]:
        path = tmp_path / "wire" / f"{name}.dcm"
        recode(native, path, ts, **options)
        files[path] = flag
    for name, source, mode, flag in [("jpeg_extended", native, "+ee", "-xx"), ("jpeg_lossless", native, "+e1", "-xs"),
                                     ("jpeg_baseline_rgb", rgb, "+eb", "-xy")]:
        path = tmp_path / "wire" / f"{name}.dcm"
        dcmtk_jpeg(source, path, mode)
        files[path] = flag
    out = tmp_path / "node"
    node = DicomNode(config(bundle, out))
    node.start()
    try:
        for path, flag in files.items():
            run = _run(storescu, flag, "-aec", "EDGESSL", "127.0.0.1", str(node.port), str(path))
            assert run.returncode == 0, f"{path.name}: {run.stderr}"
    finally:
        node.stop()
    received = {e["instance_uid"]: e for e in events(out, "instance_received")}
    for path in files:
        sent = dcmread(path)
        assert received[sent.SOPInstanceUID]["transfer_syntax"] == sent.file_meta.TransferSyntaxUID, path.name
    rows = worklist(out)
    assert len(rows) == len(files) and {r["status"] for r in rows} == {"scored"}, [r["reason"] for r in rows]
