"""The DICOM node with real pynetdicom associations on loopback: spool before acknowledgement,
triage, SR and overlays to the destination, duplicates, malformed objects, the AE allow-list,
TLS, retries with backoff, kill -9 and restart, SIGTERM draining, and the audit of the wire.

The bundle is ``runtime_bundle.make_bundle`` (16 px, a patch detector: it makes maps, so every
scored instance also gets an overlay); the images are digits at 40 px as 12-bit DICOM.
"""

from __future__ import annotations

import csv
import hashlib
import json
import signal
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from dicom_factory import write_dicom
from dicom_net import SC_CLASS, SR_CLASS, Receiver, echo, free_port, node_process, sr_content, store, tls_files
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.medical.audit_log import read_audit_log, verify_audit_log
from edgessl.edge_runtime.medical.dicom_node import DicomNode, NodeConfig
from edgessl.edge_runtime.medical.intended_use import BANNER, STATEMENT
from edgessl.edge_runtime.medical.sr import OVERLAY_SERIES_NUMBER, SR_SERIES_NUMBER
from edgessl.edge_runtime.medical.triage import TriageConfig, run_triage
from edgessl.edge_runtime.errors import EdgesslError
from pydicom import dcmread


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from runtime_bundle import make_bundle

    return make_bundle(tmp_path_factory.mktemp("node") / "bundle", "patch")


def studies(folder: Path, n: int, start: int = 0, **kw) -> list[Path]:
    """``n`` single-image studies (digits at 40 px, 12-bit), each its own study and series."""
    digits = open_dataset("digits", "train")
    paths = []
    for i in range(start, start + n):
        img = cv2.resize(digits.image(i), (40, 40), interpolation=cv2.INTER_CUBIC).astype(np.int64) * 16
        paths.append(folder / f"study{i:03d}.dcm")
        write_dicom(paths[-1], img, bits_stored=12, **kw)
    return paths


def config(bundle: Path, out: Path, **kw) -> NodeConfig:
    return NodeConfig(bundle=str(bundle), out=str(out), port=0, bind="127.0.0.1", backend="ort-cpu", **kw)


def events(out: Path, kind: str) -> list[dict]:
    return [e for e in read_audit_log(out / "audit.jsonl") if e.get("event") == kind]


def worklist(out: Path) -> list[dict]:
    with open(out / "worklist.csv") as f:
        return list(csv.DictReader(f))


def sent_bytes(path: Path) -> bytes:
    """A file's dataset as a sender encodes it in a C-STORE (explicit VR little endian)."""
    from pynetdicom.dsutils import encode

    return encode(dcmread(path), False, True)


def test_received_instances_are_spooled_scored_and_sent_back_as_sr_and_overlay(bundle, tmp_path):
    pacs = Receiver()
    node = DicomNode(config(bundle, tmp_path / "node", forward=f"PACS@127.0.0.1:{pacs.port}"))
    node.start()
    try:
        files = studies(tmp_path / "in", 3)
        assert store(files, node.port) == [0, 0, 0]
        got = pacs.wait_for(6)
    finally:
        summary = node.stop()
        pacs.close()
    assert summary["received"] == 3 and summary["scored"] == 3 and summary["acknowledged"] == 3
    sources = {str(dcmread(f).SOPInstanceUID): dcmread(f) for f in files}
    srs = [d for d in got if d.SOPClassUID == SR_CLASS]
    overlays = [d for d in got if d.SOPClassUID == SC_CLASS]
    assert len(srs) == 3 and len(overlays) == 3
    triaged = {e["instance_uid"]: e for e in events(tmp_path / "node", "triaged")}
    for sr in srs:
        c = sr_content(sr)
        [result] = c["Image result"]
        src = sources[result["Source of Measurement"][1]]
        assert result["Source of Measurement"][0] == src.SOPClassUID
        assert (sr.StudyInstanceUID, sr.PatientID) == (src.StudyInstanceUID, src.PatientID)
        assert sr.SeriesInstanceUID != src.SeriesInstanceUID and sr.SeriesNumber == SR_SERIES_NUMBER
        evidence = sr.CurrentRequestedProcedureEvidenceSequence[0]
        assert evidence.StudyInstanceUID == src.StudyInstanceUID
        assert evidence.ReferencedSeriesSequence[0].SeriesInstanceUID == src.SeriesInstanceUID
        assert evidence.ReferencedSeriesSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID == \
            src.SOPInstanceUID
        line = triaged[src.SOPInstanceUID]
        assert result["Anomaly score"] == pytest.approx(line["score"]) and \
            result["Raw anomaly score"] == pytest.approx(line["raw_score"])
        assert result["Triage decision"] == line["decision"].capitalize()
        assert c["Decision threshold"] == 1.0 and c["Raw decision threshold"] == pytest.approx(line["raw_threshold"])
        assert c["Target false-positive rate"] == pytest.approx(10.0)  # make_bundle's threshold: 10% FPR
        assert c["Operating point"] == "normal-only threshold"
        assert c["Model bundle SHA-256"] == line["bundle_hash"] == summary["bundle_hash"]
        assert c["Algorithm Version"] == line["tool_version"] and c["Intended use"] == STATEMENT
        assert sr.get("Manufacturer") == "edgessl" and sr.CompletionFlag == "COMPLETE"
    for sc in overlays:
        src = sources[sc.SourceImageSequence[0].ReferencedSOPInstanceUID]
        assert sc.StudyInstanceUID == src.StudyInstanceUID and sc.SeriesNumber == OVERLAY_SERIES_NUMBER
        assert sc.BurnedInAnnotation == "YES" and BANNER in sc.ImageComments
        band = sc.pixel_array[:20]
        assert band.max() > 200 and np.median(band) < 10  # white text on the black banner band
    rows = worklist(tmp_path / "node")
    assert [r["state"] for r in rows] == ["acknowledged"] * 3 and all(r["calling_ae"] == "SCU" for r in rows)
    assert not list((tmp_path / "node" / "spool" / "received").glob("*.dcm"))  # done: the copy is dropped


def test_wire_audit_names_associations_instances_and_the_bytes_received(bundle, tmp_path):
    pacs = Receiver()
    out = tmp_path / "node"
    key = tmp_path / "audit.key"
    key.write_bytes(bytes(range(32)))
    node = DicomNode(config(bundle, out, forward=f"PACS@127.0.0.1:{pacs.port}", audit_key=str(key)))
    node.start()
    try:
        files = studies(tmp_path / "in", 2)
        store(files, node.port, calling_ae="MODALITY1")
        pacs.wait_for(4)
    finally:
        node.stop()
        pacs.close()
    assert verify_audit_log(out / "audit.jsonl", key) > 0  # keyed: every line's HMAC, appended from several threads
    kinds = [e["event"] for e in read_audit_log(out / "audit.jsonl")]
    assert kinds[0] == "node_started" and kinds[-1] == "node_stopped"
    [accepted] = events(out, "association_accepted")
    assert accepted["calling_ae"] == "MODALITY1" and accepted["called_ae"] == "EDGESSL"
    assert accepted["address"] == "127.0.0.1" and accepted["tls"] is False
    [released] = events(out, "association_released")
    assert released["association"] == accepted["association"] and released["instances"] == 2
    received = {e["instance_uid"]: e for e in events(out, "instance_received")}
    for f in files:
        e = received[str(dcmread(f).SOPInstanceUID)]
        assert e["status"] == "stored" and e["dimse_status"] == 0 and e["association"] == accepted["association"]
        assert e["dataset_bytes"] == len(sent_bytes(f))
        assert e["dataset_sha256"] == hashlib.sha256(sent_bytes(f)).hexdigest()
    sent = events(out, "result_sent")
    assert sorted(e["instance_uid"] for e in sent) == sorted(received)
    assert all(e["status"] == "acknowledged" and len(e["results"]) == 2 for e in sent)
    assert all(r["dimse_status"] == 0 for e in sent for r in e["results"])


def test_a_duplicate_is_acknowledged_but_scored_once(bundle, tmp_path):
    node = DicomNode(config(bundle, tmp_path / "node"))
    node.start()
    try:
        [f] = studies(tmp_path / "in", 1)
        assert store([f], node.port) == [0]
        assert store([f], node.port) == [0]
    finally:
        node.stop()
    assert Counter(e["status"] for e in events(tmp_path / "node", "instance_received")) == {"stored": 1,
                                                                                          "duplicate": 1}
    assert len(events(tmp_path / "node", "triaged")) == 1 and len(worklist(tmp_path / "node")) == 1


def test_a_malformed_instance_is_refused_and_the_node_keeps_serving(bundle, tmp_path):
    node = DicomNode(config(bundle, tmp_path / "node"))
    node.start()
    try:
        bad = tmp_path / "bad.dcm"
        ds = write_dicom(bad, np.zeros((20, 20)), bits_stored=12)
        ds.Rows = 40  # the pixel data holds 20 x 20
        ds.save_as(bad, enforce_file_format=True)
        assert store([bad], node.port) == [0xC000]
        assert store(studies(tmp_path / "in", 1), node.port) == [0]
    finally:
        node.stop()
    refused = [e for e in events(tmp_path / "node", "instance_received") if e["status"] == "refused"]
    assert len(refused) == 1 and "needs 1600" in refused[0]["reason"] and refused[0]["dimse_status"] == 0xC000
    assert [r["status"] for r in worklist(tmp_path / "node")] == ["scored"]


def test_calling_ae_titles_outside_the_allow_list_are_rejected_and_audited(bundle, tmp_path):
    node = DicomNode(config(bundle, tmp_path / "node", allow_ae=["MODALITY1"]))
    node.start()
    try:
        with pytest.raises(ConnectionError, match="rejected"):
            store(studies(tmp_path / "in", 1), node.port, calling_ae="INTRUDER")
        assert store(studies(tmp_path / "in", 1, start=1), node.port, calling_ae="MODALITY1") == [0]
    finally:
        node.stop()
    [rejected] = events(tmp_path / "node", "association_rejected")
    assert rejected["calling_ae"] == "INTRUDER" and "allow-list" in rejected["reason"]
    assert [e["calling_ae"] for e in events(tmp_path / "node", "association_accepted")] == ["MODALITY1"]


def test_tls_with_client_certificates(bundle, tmp_path):
    import ssl

    tls = tls_files(tmp_path / "tls")
    node = DicomNode(config(bundle, tmp_path / "node", tls_cert=str(tls["cert"]), tls_key=str(tls["key"]),
                            tls_ca=str(tls["ca"])))
    node.start()
    try:
        client = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls["ca"]))
        client.load_cert_chain(str(tls["cert"]), str(tls["key"]))
        assert store(studies(tmp_path / "in", 1), node.port, tls_args=(client, "localhost")) == [0]
        anonymous = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(tls["ca"]))
        with pytest.raises((ConnectionError, OSError)):  # no client certificate: the handshake fails
            store(studies(tmp_path / "in", 1, start=1), node.port, tls_args=(anonymous, "localhost"))
        with pytest.raises((ConnectionError, OSError)):  # plain DICOM to a TLS port
            store(studies(tmp_path / "in", 1, start=2), node.port)
    finally:
        node.stop()
    [accepted] = events(tmp_path / "node", "association_accepted")
    assert accepted["tls"] is True and len(events(tmp_path / "node", "triaged")) == 1


def test_a_failed_send_is_retried_with_backoff_and_its_state_is_in_the_worklist(bundle, tmp_path):
    port = free_port()
    out = tmp_path / "node"
    node = DicomNode(config(bundle, out, forward=f"PACS@127.0.0.1:{port}", retry_initial=0.5, retry_max=1.0))
    node.start()
    pacs = None
    try:
        [f] = studies(tmp_path / "in", 1)
        store([f], node.port)
        deadline = time.monotonic() + 30
        while len(events(out, "result_sent")) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        node.flush(force=True)
        [row] = worklist(out)
        assert row["state"] == "retrying" and int(row["forward_attempts"]) >= 1 and row["next_try"]
        assert "cannot reach" in row["forward_error"] or "did not answer" in row["forward_error"]
        assert (out / "spool" / "received" / f"{dcmread(f).SOPInstanceUID}.dcm").is_file()  # kept until acknowledged
        pacs = Receiver(port)
        got = pacs.wait_for(2)
    finally:
        node.stop()
        if pacs is not None:
            pacs.close()
    assert len(got) == 2
    sent = events(out, "result_sent")
    assert [e["status"] for e in sent][-1] == "acknowledged" and all(e["status"] == "failed" for e in sent[:-1])
    assert [e["attempt"] for e in sent] == list(range(1, len(sent) + 1))
    assert len(sent) >= 3  # failed at least twice: retried
    assert worklist(out)[0]["state"] == "acknowledged"


def test_a_refusing_destination_keeps_the_results_in_the_spool_for_the_next_start(bundle, tmp_path):
    pacs = Receiver(status=0xA700)
    out = tmp_path / "node"
    node = DicomNode(config(bundle, out, forward=f"PACS@127.0.0.1:{pacs.port}", retry_initial=60))
    node.start()
    try:
        [f] = studies(tmp_path / "in", 1)
        store([f], node.port)
        deadline = time.monotonic() + 30
        while not events(out, "result_sent") and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        summary = node.stop()
    [failed] = events(out, "result_sent")
    assert failed["status"] == "failed" and "0xA700" in failed["error"] and summary["waiting_in_spool"] == 1
    pacs.status = 0x0000
    node = DicomNode(config(bundle, out, forward=f"PACS@127.0.0.1:{pacs.port}"))
    node.start()  # resumes: sends at once
    try:
        got = pacs.wait_for(2)
    finally:
        node.stop()
        pacs.close()
    assert len(got) == 2 and len(events(out, "triaged")) == 1
    assert events(out, "result_sent")[-1]["status"] == "acknowledged"


def test_kill_9_after_the_c_store_response_then_restart_scores_and_forwards_once(bundle, tmp_path):
    """The node is killed right after it acknowledged the instance (its destination down, so nothing
    was forwarded); after a restart with the destination up, the instance is scored once and its
    results arrive once."""
    out, port, pacs_port = tmp_path / "node", free_port(), free_port()
    args = ["--bundle", str(bundle), "--out", str(out), "--backend", "ort-cpu", "--forward",
            f"PACS@127.0.0.1:{pacs_port}", "--retry-initial", "600"]
    [f] = studies(tmp_path / "in", 1)
    uid = str(dcmread(f).SOPInstanceUID)
    with node_process(args, port, tmp_path / "node.log") as proc:
        assert store([f], port) == [0]
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert (out / "spool" / "received" / f"{uid}.dcm").is_file()
    pacs = Receiver(pacs_port)
    try:
        with node_process(args, port, tmp_path / "node.log"):
            got = pacs.wait_for(2)
            time.sleep(1.0)  # nothing more arrives
            got = list(pacs.received)
    finally:
        pacs.close()
    assert sorted(str(d.SOPClassUID) for d in got) == sorted([SR_CLASS, SC_CLASS])
    assert sr_content([d for d in got if d.SOPClassUID == SR_CLASS][0])["Image result"][0][
        "Source of Measurement"][1] == uid
    assert [e["instance_uid"] for e in events(out, "triaged")] == [uid]
    assert [e["status"] for e in events(out, "result_sent")][-1] == "acknowledged"
    assert Counter(e["status"] for e in events(out, "result_sent"))["acknowledged"] == 1
    verify_audit_log(out / "audit.jsonl")


def test_sigterm_drains_everything_received_and_exits_cleanly(bundle, tmp_path):
    out, port = tmp_path / "node", free_port()
    files = studies(tmp_path / "in", 6)
    (tmp_path / "node.yaml").write_text("allow-ae: [SCU, MODALITY1]\nretry-max: 60\n")
    with node_process(["--bundle", str(bundle), "--out", str(out), "--backend", "ort-cpu", "--json", "--config",
                       str(tmp_path / "node.yaml")], port, tmp_path / "node.log") as proc:
        assert store(files, port) == [0] * 6
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    summary = json.loads((tmp_path / "node.log").read_text().strip().splitlines()[-1])
    assert summary["received"] == 6 and summary["scored"] == 6
    assert len(events(out, "triaged")) == 6 and events(out, "node_stopped")
    assert [r["state"] for r in worklist(out)] == ["done"] * 6 and (out / "report.html").is_file()
    assert events(out, "node_started")[0]["allow_ae"] == ["SCU", "MODALITY1"]  # from --config
    verify_audit_log(out / "audit.jsonl")


def test_a_port_in_use_and_tls_without_a_certificate_are_one_line_errors(bundle, tmp_path, capsys):
    from edgessl.cli import main as cli_main

    node = DicomNode(config(bundle, tmp_path / "a"))
    node.start()
    capsys.readouterr()
    try:
        base = ["dicom-node", "--bundle", str(bundle), "--out", str(tmp_path / "b"), "--bind", "127.0.0.1",
                "--backend", "ort-cpu"]
        assert cli_main([*base, "--port", str(node.port)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgessl dicom-node: error: cannot listen on 127.0.0.1:") and err.count("\n") == 1
        assert cli_main([*base, "--tls-key", "node.key"]) == 2
        assert "TLS needs tls-cert" in capsys.readouterr().err
    finally:
        node.stop()


def test_echo_and_instances_outside_the_intended_use_are_recorded_not_scored(bundle, tmp_path):
    node = DicomNode(config(bundle, tmp_path / "node"))
    node.start()
    try:
        assert echo(node.port)
        big = tmp_path / "big.dcm"
        write_dicom(big, np.zeros((400, 400), np.int64), bits_stored=12)  # 16 px bundle: 2-128 px
        assert store([big], node.port) == [0]
    finally:
        node.stop()
    [row] = worklist(tmp_path / "node")
    assert row["status"] == "not_scored" and "image size 400x400" in row["reason"] and row["state"] == "done"
    assert not list((tmp_path / "node" / "spool" / "results").glob("*/*.dcm"))  # no results to send


def test_the_nodes_own_results_routed_back_are_not_scored(bundle, tmp_path):
    pacs = Receiver()
    node = DicomNode(config(bundle, tmp_path / "node", forward=f"PACS@127.0.0.1:{pacs.port}"))
    node.start()
    try:
        store(studies(tmp_path / "in", 1), node.port)
        overlay = [d for d in pacs.wait_for(2) if d.SOPClassUID == SC_CLASS][0]
        overlay.save_as(tmp_path / "overlay.dcm", enforce_file_format=True)
        assert store([tmp_path / "overlay.dcm"], node.port) == [0]
    finally:
        node.stop()
        pacs.close()
    reasons = [r["reason"] for r in worklist(tmp_path / "node") if r["status"] != "scored"]
    assert len(reasons) == 1 and "edgessl result object" in reasons[0]


def test_backoff_doubles_up_to_its_maximum():
    from edgessl.edge_runtime.medical.forward import backoff

    assert [backoff(n, 5.0, 60.0) for n in range(1, 7)] == [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]


def test_a_bad_forward_address_is_a_one_line_error(bundle, tmp_path):
    with pytest.raises(EdgesslError, match="AET@HOST:PORT"):
        DicomNode(config(bundle, tmp_path / "node", forward="PACS:104"))


def test_triage_dicom_out_writes_the_objects_the_node_sends(bundle, tmp_path):
    files = studies(tmp_path / "in", 2)
    write_dicom(tmp_path / "in" / "multi.dcm", np.stack([np.full((30, 30), v) for v in (10, 900, 4000)]),
                bits_stored=12)
    summary = run_triage(TriageConfig(bundle=str(bundle), source=[str(tmp_path / "in")], out=str(tmp_path / "t"),
                                      dicom_out=str(tmp_path / "dicom"), backend="ort-cpu", progress=False))
    objects = [dcmread(p) for p in sorted((tmp_path / "dicom").glob("*.dcm"))]
    assert summary["n_dicom_objects"] == len(objects) == 3 + 2 + 3  # an SR per instance, an overlay per frame
    srs = {sr_content(d)["Image result"][0]["Source of Measurement"][1]: d for d in objects if d.Modality == "SR"}
    multi = dcmread(tmp_path / "in" / "multi.dcm")
    frames = sr_content(srs[multi.SOPInstanceUID])["Image result"]
    assert [r["Source of Measurement"][2] for r in frames] == [1, 2, 3]  # DICOM frame numbers
    for f in files:
        assert srs[dcmread(f).SOPInstanceUID].StudyInstanceUID == dcmread(f).StudyInstanceUID


def test_the_sr_states_the_operating_point_and_the_intended_use_the_bundle_carries(bundle, tmp_path):
    import shutil

    from edgessl.edge_runtime.bundle_update import update_bundle
    from edgessl.edge_runtime.medical.triage import OperatingPointConfig, set_operating_point

    validated = tmp_path / "bundle"
    shutil.copytree(bundle, validated)
    statement, banner = "Research triage aid for CR digits. Not for diagnosis.", "RESEARCH USE - NOT FOR DIAGNOSIS"
    update_bundle(validated, lambda _, m: {**m, "intended_use": {"statement": statement, "banner": banner}})
    point = set_operating_point(OperatingPointConfig(bundle=str(validated), sensitivity="0.9", normal_label="0",
                                                     data="digits", split="val", max_images=120, modality=["CR"],
                                                     backend="ort-cpu", progress=False))["operating_point"]
    files = studies(tmp_path / "in", 1)
    run_triage(TriageConfig(bundle=str(validated), source=[str(f) for f in files], out=str(tmp_path / "t"),
                            dicom_out=str(tmp_path / "dicom"), backend="ort-cpu", progress=False))
    objects = [dcmread(p) for p in (tmp_path / "dicom").glob("*.dcm")]
    [sr] = [d for d in objects if d.Modality == "SR"]
    [sc] = [d for d in objects if d.Modality != "SR"]
    c = sr_content(sr)
    assert c["Intended use"] == statement and banner in sr.SeriesDescription  # the manufacturer's, kept
    assert sc.ImageComments.startswith(banner)
    assert c["Operating point"] == "sensitivity=0.9" and c["Target sensitivity"] == pytest.approx(90.0)
    assert c["Validation sensitivity"] == pytest.approx(100 * point["sensitivity"])
    assert c["Validation specificity"] == pytest.approx(100 * point["specificity"])
    assert c["Raw decision threshold"] == pytest.approx(point["raw_threshold"])
    result = c["Image result"][0]
    assert result["Triage decision"] == ("Abnormal" if result["Raw anomaly score"] >= point["raw_threshold"]
                                         else "Normal")
