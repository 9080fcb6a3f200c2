"""Medical triage end to end: PneumoniaMNIST as DICOM, the operating point, worklist, report, audit log.

The bundle is a real one made the project's way in a module fixture (resnet18, SimCLR for 2 steps on
PneumoniaMNIST at 16 px, a patch detector so the report has heatmaps, exported): about 25 s. Its
detector is weak (2 training steps): the tests check the mechanics and that the figures are
computed and reported, not how good they are. To keep the suite fast (each study is scored alone, at
batch 1), the operating point uses 200 of the 524 validation images (a seeded random subset) and the
test split is subsampled to every 6th image (104 of 624, both classes kept in proportion: 65
pneumonia, 39 normal); the README figures come from the full splits.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from requires import require, require_binary

from dicom_factory import write_dicom
from edgessl.cli import main as cli_main
from edgessl.edge_runtime.medical import operating_point as opmod
from edgessl.edge_runtime.medical.audit_log import read_audit_log, verify_audit_log
from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.medical.dicom import read_dicom
from edgessl.edge_runtime.medical.intended_use import BANNER, STATEMENT
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.images import to_uint8
from edgessl.edge_runtime.medical.triage import OperatingPointConfig, TriageConfig, run_triage, set_operating_point

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
NPZ = DATA / "pneumoniamnist" / "pneumoniamnist.npz"
STEP = 6  # every 6th test image
VAL_IMAGES = 200
BAD_FILES = ("fake.dcm", "no_pixels.dcm", "jpegls.dcm", "mr.dcm", "huge.dcm")
AUDIT_FIELDS = ("file", "file_sha256", "image_sha256", "study_uid", "series_uid", "instance_uid", "modality",
                "bundle_hash", "manifest_version", "backend", "precision", "threshold", "raw_threshold",
                "threshold_kind", "operating_point", "score", "raw_score", "decision", "status", "reason", "time",
                "tool_version", "run_id", "seq", "prev_sha256", "sha256")


def _need_data() -> None:
    if not NPZ.is_file():
        pytest.skip(f"PneumoniaMNIST not found at {NPZ} (shared/data is not beside this checkout)")


# -- operating-point rule and audit log: no bundle needed


def test_operating_point_is_the_largest_threshold_meeting_the_target():
    rng = np.random.RandomState(0)
    raw = np.concatenate([rng.rand(40), rng.rand(60) + 0.5])
    anomalous = np.r_[np.zeros(40, bool), np.ones(60, bool)]
    for target in (0.5, 0.9, 0.95, 1.0):
        t, sens, spec = opmod.choose(raw, anomalous, target)
        assert sens >= target
        higher = raw[raw > t]
        if len(higher):  # the next threshold up misses the target
            assert np.mean(raw[anomalous] >= higher.min()) < target
        assert spec == np.mean(raw[~anomalous] < t)
    with pytest.raises(EdgesslError, match="at least 5 labelled anomalous"):
        opmod.choose(raw[:43], anomalous[:43], 0.9)


def test_operating_point_request_parsing():
    assert opmod.parse_target("sensitivity=0.95") == 0.95
    assert opmod.parse_target("95%") == 0.95
    for bad in ("specificity=0.9", "sensitivity=1.5", "sensitivity=x"):
        with pytest.raises(EdgesslError):
            opmod.parse_target(bad)


def test_stale_operating_point_is_refused():
    manifest = {"precisions": {"fp32": {"model": "model.onnx"}}, "detector": {"directory": "detector"},
                "files": {"model.onnx": "a" * 64, "detector/detector.npz": "b" * 64}}
    point = opmod.OperatingPoint("sensitivity=0.9", 0.9, 1.0, 1.0, 0.9, 0.5, 10, 10,
                                 model_identity=opmod.model_identity(manifest, "fp32"))
    opmod.check_current(manifest, "fp32", point)
    manifest["files"]["detector/detector.npz"] = "c" * 64  # detector re-fitted
    with pytest.raises(EdgesslError, match="different model or detector"):
        opmod.check_current(manifest, "fp32", point)


# -- a PneumoniaMNIST bundle and the test split as DICOM


@pytest.fixture(scope="module")
def pneumonia_bundle(tmp_path_factory) -> Path:
    _need_data()
    require("torch")
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.fit import FitConfig, fit_run
    from edgessl.train.pretrain import PretrainConfig, pretrain

    root = tmp_path_factory.mktemp("pneumonia")
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    pretrain(PretrainConfig(data=str(NPZ), method="simclr", image_size=16, batch_size=32, max_steps=2,
                            max_images=256, device="cpu", out=str(root / "run")))
    fit_run(FitConfig(run=str(root / "run"), data=str(NPZ), normal_label="0", detector="patch", coreset=256,
                      target_fpr=0.05, max_images=200, device="cpu"))
    export_bundle(ExportConfig(run=str(root / "run"), out=str(root / "bundle"), verify_images=32))
    return root / "bundle"


@pytest.fixture(scope="module")
def validated(pneumonia_bundle) -> dict:
    """The bundle with a 95%-sensitivity operating point set on 200 validation images (CR/DX only)."""
    return set_operating_point(OperatingPointConfig(bundle=str(pneumonia_bundle), sensitivity="sensitivity=0.95",
                                                    normal_label="0", data=str(NPZ), max_images=VAL_IMAGES,
                                                    modality=["CR", "DX"]))


def _write_case(path: Path, img: np.ndarray, i: int) -> None:
    """Four encodings, each decoding to exactly ``img`` (window c = M/2 + 0.5, w = M + 1 maps v to v / M)."""
    kind = i % 4
    if kind == 0:  # MONOCHROME1, 8-bit: stored values inverted
        write_dicom(path, 255 - img.astype(int), photometric="MONOCHROME1", window=(128.0, 256.0))
    elif kind == 1:  # 16-bit unsigned
        write_dicom(path, img.astype(int) * 257, bits_stored=16, window=(32768.0, 65536.0), modality="DX")
    elif kind == 2:  # 12-bit signed with rescale: v = stored / 16 + 128
        write_dicom(path, img.astype(int) * 16 - 2048, bits_stored=12, signed=True, slope=0.0625,
                    intercept=128.0, window=(128.0, 256.0))
    else:  # a plain PNG for the same workflow
        cv2.imwrite(str(path.with_suffix(".png")), img)


@pytest.fixture(scope="module")
def test_split(tmp_path_factory) -> dict:
    """Every 6th test image as DICOM (MONOCHROME1 8-bit, 16-bit, 12-bit signed+rescale) or PNG, four of them
    as one multi-frame file, plus one bad input of each kind; a file,label CSV."""
    _need_data()
    data = np.load(NPZ)
    idx = np.arange(0, len(data["test_images"]), STEP)
    images, labels = data["test_images"][idx], data["test_labels"][idx, 0]
    d = tmp_path_factory.mktemp("dicom") / "studies"
    rows, names = [], {}
    for n, (img, lab) in enumerate(zip(images[4:], labels[4:]), 4):
        _write_case(d / f"img{n:04d}.dcm", img, n)
        name = f"img{n:04d}.{'png' if n % 4 == 3 else 'dcm'}"
        rows.append((name, int(lab)))
        names[n] = (name, None)
    write_dicom(d / "multi.dcm", images[:4].astype(int) * 16, bits_stored=12, window=(2040.5, 4081.0))
    for f in range(4):
        rows.append((f"multi.dcm#{f}", int(labels[f])))
        names[f] = ("multi.dcm", f)
    ok, png = cv2.imencode(".png", images[0])
    (d / "fake.dcm").write_bytes(png.tobytes())
    write_dicom(d / "no_pixels.dcm", images[0], pixel_data=False)
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGLSLossless

    write_dicom(d / "jpegls.dcm", images[0], transfer_syntax=JPEGLSLossless,
                raw_pixel_bytes=encapsulate([b"\xff\xd8junk\xff\xd9"]))
    write_dicom(d / "mr.dcm", images[0], modality="MR", window=(128.0, 256.0))
    write_dicom(d / "huge.dcm", cv2.resize(images[0], (512, 512)), window=(128.0, 256.0))
    with open(d.parent / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "label"), *rows])
    npz = d.parent / "subset.npz"  # the same images as a MedMNIST-style .npz
    np.savez(npz, train_images=images[:1], train_labels=labels[:1, None], test_images=images,
             test_labels=labels[:, None])
    return {"dir": d, "labels": d.parent / "labels.csv", "npz": npz, "images": images, "y": labels, "names": names}


def test_dicom_copies_decode_to_the_original_pixels(test_split):
    for n, (name, frame) in test_split["names"].items():
        path = test_split["dir"] / name
        img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if name.endswith(".png") else \
            read_dicom(path)[1][frame or 0]
        np.testing.assert_array_equal(to_uint8(img), test_split["images"][n], err_msg=name)


def test_operating_point_stored_in_the_sealed_bundle(pneumonia_bundle, validated):
    bundle = Bundle.load(pneumonia_bundle, verify=True)  # re-sealed: every hash still valid
    point = bundle.manifest["operating_points"]["fp32"]["sensitivity=0.95"]
    assert point["sensitivity"] >= 0.95 and 0.0 <= point["specificity"] <= 1.0
    assert point["n_anomalous"] + point["n_normal"] == VAL_IMAGES
    assert bundle.manifest["intended_use"] == {"modalities": ["CR", "DX"], "reference_size": 28, "size_factor": 8.0,
                                               "statement": STATEMENT, "banner": BANNER}
    assert validated["bundle_hash"] == bundle.hash


def _triage(bundle: Path, test_split: dict, out: Path, capsys) -> dict:
    rc = cli_main(["triage", "--bundle", str(bundle), "--source", str(test_split["dir"]), "--out", str(out),
                   "--labels", str(test_split["labels"]), "--normal-label", "0",
                   "--operating-point", "sensitivity=0.95", "--json"])
    assert rc == 0
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def triaged(pneumonia_bundle, validated, test_split, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("triage") / "report"
    summary = run_triage(TriageConfig(bundle=str(pneumonia_bundle), source=[str(test_split["dir"])], out=str(out),
                                      labels=str(test_split["labels"]), normal_label="0",
                                      operating_point="sensitivity=0.95"))
    return {"out": out, "summary": summary}


def test_worklist_ranked_with_unscored_reasons(triaged, test_split):
    with open(triaged["out"] / "worklist.csv") as f:
        rows = list(csv.DictReader(f))
    scored = [r for r in rows if r["status"] == "scored"]
    unscored = [r for r in rows if r["status"] == "not_scored"]
    assert len(scored) == len(test_split["images"]) and rows[: len(scored)] == scored
    assert [int(r["rank"]) for r in scored] == list(range(1, len(scored) + 1))
    raw = [float(r["raw_score"]) for r in scored]
    assert raw == sorted(raw, reverse=True)
    assert all(r["decision"] == ("abnormal" if float(r["raw_score"]) >= triaged["summary"]["raw_threshold"]
                                 else "normal") for r in scored)
    reasons = {Path(r["file"]).name: r["reason"] for r in unscored}
    assert set(reasons) == set(BAD_FILES)
    assert "not a DICOM file" in reasons["fake.dcm"] and "no pixel data" in reasons["no_pixels.dcm"]
    assert "cannot decode pixel data" in reasons["jpegls.dcm"]  # a corrupt JPEG-LS stream
    assert "modality MR" in reasons["mr.dcm"] and "image size 512x512" in reasons["huge.dcm"]
    multi = [r for r in scored if Path(r["file"]).name == "multi.dcm"]
    assert sorted(int(r["frame"]) for r in multi) == [0, 1, 2, 3]
    assert {r["modality"] for r in scored} == {"CR", "DX", ""}  # PNGs carry no modality


def test_sensitivity_reported_beside_validation(triaged, test_split, validated):
    s = triaged["summary"]
    op, test = s["operating_point"], s["test"]
    assert s["threshold_kind"] == "operating_point" and op["name"] == "sensitivity=0.95"
    assert test["n_anomalous"] == int(test_split["y"].sum()) and test["n_normal"] == int((test_split["y"] == 0).sum())
    assert 0.0 <= test["sensitivity"] <= 1.0 and 0.0 <= test["specificity"] <= 1.0
    print(f"\nvalidation sensitivity {op['sensitivity']:.3f} specificity {op['specificity']:.3f}; "
          f"test (every {STEP}th) sensitivity {test['sensitivity']:.3f} specificity {test['specificity']:.3f} "
          f"AUROC {test['auroc']:.3f}")
    html = (triaged["out"] / "report.html").read_text()
    for text in ("validation sensitivity", "test sensitivity (this run)", f"{op['sensitivity']:.4g}",
                 f"{test['sensitivity']:.4g}", "<svg", "sensitivity=0.95", "data:image/png;base64,", 'alt="heatmap"',
                 "jpegls.dcm"):
        assert text in html, text
    assert "<script" not in html and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_audit_log_content(triaged, pneumonia_bundle):
    entries = read_audit_log(triaged["out"] / "audit.jsonl")
    assert len(entries) == triaged["summary"]["n_records"] and verify_audit_log(triaged["out"] / "audit.jsonl")
    bundle = Bundle.load(pneumonia_bundle)
    for e in entries:
        assert set(AUDIT_FIELDS) <= set(e)
        assert e["bundle_hash"] == bundle.hash and e["manifest_version"] == 1 and e["precision"] == "fp32"
        assert e["threshold_kind"] == "operating_point" and e["backend"] == "ort-cpu"
        assert len(e["file_sha256"]) == 64 and e["time"].endswith("Z")
    dicom = [e for e in entries if e["status"] == "scored" and e["file"].endswith(".dcm")]
    assert all(e["study_uid"] and e["series_uid"] and e["instance_uid"] for e in dicom)
    assert {e["decision"] for e in entries if e["status"] == "scored"} <= {"abnormal", "normal"}
    assert all(e["decision"] is None and e["reason"] for e in entries if e["status"] == "not_scored")


def test_second_run_appends_and_scores_bit_identically(triaged, pneumonia_bundle, test_split, capsys):
    log = triaged["out"] / "audit.jsonl"
    before = log.read_bytes()
    summary = _triage(pneumonia_bundle, test_split, triaged["out"], capsys)  # same out dir, through the CLI
    after = log.read_bytes()
    assert after.startswith(before) and verify_audit_log(log) == 2 * triaged["summary"]["n_records"]
    entries = read_audit_log(log)
    first, second = entries[: len(entries) // 2], entries[len(entries) // 2:]
    assert {e["run_id"] for e in second} == {summary["run_id"]} != {e["run_id"] for e in first}
    for a, b in zip(first, second):
        assert (a["file"], a["frame"], a["file_sha256"]) == (b["file"], b["frame"], b["file_sha256"])
        assert a["raw_score"] == b["raw_score"] and a["score"] == b["score"]  # bit-identical floats


def test_npz_input_scores_like_its_dicom_copies(triaged, pneumonia_bundle, test_split, tmp_path):
    summary = run_triage(TriageConfig(bundle=str(pneumonia_bundle), source=[str(test_split["npz"])],
                                      out=str(tmp_path), normal_label="0", operating_point="none"))
    assert summary["threshold_kind"] == "normal_only" and summary["n_scored"] == len(test_split["images"])
    assert summary["test"]["n_anomalous"] == int(test_split["y"].sum())
    npz_raw = {int(e["frame"]): e["raw_score"] for e in read_audit_log(tmp_path / "audit.jsonl")}
    dicom_raw = {(Path(e["file"]).name, e["frame"]): e["raw_score"]
                 for e in read_audit_log(triaged["out"] / "audit.jsonl") if e["status"] == "scored"}
    for n, key in test_split["names"].items():
        assert dicom_raw[key] == npz_raw[n], key  # same pixels, same score, whatever the encoding


def test_tampered_bundle_is_refused(pneumonia_bundle, validated, test_split, tmp_path, capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(pneumonia_bundle, bundle)
    det = next(p for p in sorted((bundle / "detector").iterdir()) if p.is_file())
    det.write_bytes(det.read_bytes()[:-1] + bytes([det.read_bytes()[-1] ^ 1]))  # one bit flipped
    out = tmp_path / "report"
    rc = cli_main(["triage", "--bundle", str(bundle), "--source", str(test_split["dir"]), "--out", str(out)])
    assert rc == 2 and "does not match its sha256" in capsys.readouterr().err
    assert not out.exists()  # refused before anything was scored or logged
    with pytest.raises(EdgesslError, match="does not match its sha256"):  # and never re-sealed
        set_operating_point(OperatingPointConfig(bundle=str(bundle), sensitivity="0.9", normal_label="0",
                                                 data=str(NPZ), max_images=50))


def test_operating_point_from_labelled_dicoms_through_the_cli(pneumonia_bundle, validated, test_split, tmp_path,
                                                              capsys):
    bundle = tmp_path / "bundle"
    shutil.copytree(pneumonia_bundle, bundle)
    d = test_split["dir"]
    rc = cli_main(["operating-point", "--bundle", str(bundle), "--source", str(d / "img*.dcm"), str(d / "multi.dcm"),
                   str(d / "fake.dcm"), "--labels", str(test_split["labels"]), "--normal-label", "0",
                   "--sensitivity", "0.9", "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["intended_use"]["modalities"] == ["CR", "DX"]  # those of the validation DICOMs
    assert len(out["skipped"]) == 1 and "not a DICOM file" in out["skipped"][0]
    points = Bundle.load(bundle).manifest["operating_points"]["fp32"]
    assert set(points) == {"sensitivity=0.95", "sensitivity=0.9"} and points["sensitivity=0.9"]["sensitivity"] >= 0.9
    with pytest.raises(EdgesslError, match="no label"):
        set_operating_point(OperatingPointConfig(bundle=str(bundle), sensitivity="0.9", normal_label="0",
                                                 source=[str(d / "mr.dcm")], labels=str(test_split["labels"])))


def test_missing_operating_point_is_a_clear_error(pneumonia_bundle, validated, test_split, tmp_path):
    with pytest.raises(EdgesslError, match="no operating point sensitivity=0.99 for fp32.*edgessl operating-point"):
        run_triage(TriageConfig(bundle=str(pneumonia_bundle), source=[str(test_split["dir"])], out=str(tmp_path),
                                operating_point="sensitivity=0.99"))


def test_report_renders_in_chromium(triaged, tmp_path):
    browser = require_binary("chromium", "chromium-browser",
                             reason="chromium is not installed (Debian: apt-get install chromium); .ci/run installs it")
    shot = tmp_path / "report.png"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,1800",
           (triaged["out"] / "report.html").as_uri()]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    img = cv2.imread(str(shot))
    assert img is not None and img.shape[:2] == (1800, 1280)
    assert img.std() > 20  # text, thumbnails and the histogram drawn, not a blank page
    keep = os.environ.get("EDGESSL_SCREENSHOT")
    if keep:
        shutil.copy(shot, keep)


def test_a_studys_score_does_not_depend_on_its_batch(tmp_path):
    """Triage scores in batches (the one scoring loop); each study's score is the same whether it is
    scored alone, in a batch of 4 with its neighbours, or with the studies in reverse order."""
    from runtime_bundle import make_bundle

    bundle = make_bundle(tmp_path / "bundle", "patch")
    rng = np.random.RandomState(1)
    for i in range(9):
        cv2.imwrite(str(tmp_path / f"s{i}.png"), rng.randint(0, 255, (28 + 3 * i, 30), dtype=np.uint8))
    files = [str(tmp_path / f"s{i}.png") for i in range(9)]

    def scores(batch_size: int, order: list[str]) -> dict[str, float]:
        out = tmp_path / f"t{batch_size}_{order[0][-6:]}"
        summary = run_triage(TriageConfig(bundle=str(bundle), source=order, out=str(out), batch_size=batch_size,
                                          backend="ort-cpu"))
        assert summary["n_scored"] == 9
        with open(out / "worklist.csv") as f:
            return {r["file"]: float(r["raw_score"]) for r in csv.DictReader(f)}

    alone = scores(1, files)
    assert scores(4, files) == alone and scores(4, files[::-1]) == alone
