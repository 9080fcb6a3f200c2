"""Every transfer syntax a PACS stores, PALETTE COLOR and YBR, read like the native file.

Files are written here: a 12-bit grey image, an 8-bit grey image and an 8-bit RGB image (digits
upscaled over a gradient), as native Explicit VR Little Endian, then re-encoded by pydicom's
encoders (RLE, JPEG-LS lossless and near-lossless, JPEG 2000 lossless and lossy, deflated, big
endian) and by dcmtk's ``dcmcjpeg`` (JPEG baseline, extended, lossless). A lossless file must decode
to the native file's stored values and score exactly like it; a lossy one within its codec's
error (JPEG-LS near-lossless: at most NEAR; JPEG 2000 at a PSNR target: that PSNR; JPEG: a PSNR
floor) and score. The same files read as a training dataset (``--data``).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest

from requires import require_binary

from dicom_factory import dcmtk_jpeg, recode, write_dicom
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.data.user_data import open_source_dataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.medical.dicom import read_dicom
from edgessl.edge_runtime.medical.triage import TriageConfig, run_triage
from pydicom import dcmread
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian, JPEG2000, JPEG2000Lossless,
                         JPEGLSLossless, JPEGLSNearLossless, RLELossless)

import edgessl.edge_runtime.medical.dicom_dataset  # noqa: F401  (registers DICOM for --data)


def _images() -> dict[str, np.ndarray]:
    digits = open_dataset("digits", "train")
    grey = [cv2.resize(digits.image(i), (48, 40), interpolation=cv2.INTER_CUBIC).astype(np.int64) for i in range(3)]
    ramp = np.add.outer(np.arange(40), np.arange(48))
    grey12 = np.clip(grey[0] * 12 + ramp * 10, 0, 4095)
    rgb = np.stack([grey[0], grey[1], np.clip(ramp * 2, 0, 255)], -1).astype(np.uint8)
    return {"grey12": grey12, "grey8": np.clip(grey[1] + ramp, 0, 255), "rgb": rgb,
            "multi12": np.stack([np.clip(g * 12 + ramp * 5, 0, 4095) for g in grey])}


def _native(folder: Path, kind: str, img: np.ndarray) -> Path:
    path = folder / f"native_{kind}.dcm"
    if not path.exists():
        if kind == "rgb":
            write_dicom(path, img, photometric="RGB")
        else:
            write_dicom(path, img, bits_stored=8 if kind == "grey8" else 12)
    return path


# (name, source image, transfer syntax, encoder options, max stored error (0: lossless) or None, PSNR floor)
PYDICOM_CASES = [
    ("rle", "grey12", RLELossless, {}, 0, None),
    ("rle_rgb", "rgb", RLELossless, {}, 0, None),
    ("rle_multiframe", "multi12", RLELossless, {}, 0, None),
    ("jpegls", "grey12", JPEGLSLossless, {}, 0, None),
    ("jpegls_rgb", "rgb", JPEGLSLossless, {}, 0, None),
    ("jpegls_near", "grey12", JPEGLSNearLossless, {"jls_error": 3}, 3, None),
    ("j2k", "grey12", JPEG2000Lossless, {}, 0, None),
    ("j2k_rgb", "rgb", JPEG2000Lossless, {"use_mct": True}, 0, None),  # YBR_RCT
    ("j2k_multiframe", "multi12", JPEG2000Lossless, {}, 0, None),
    ("j2k_lossy", "grey12", JPEG2000, {"j2k_psnr": [60]}, None, 59.0),
    ("deflated", "grey12", DeflatedExplicitVRLittleEndian, {}, 0, None),
    ("big_endian", "grey12", ExplicitVRBigEndian, {}, 0, None),
    ("big_endian_rgb", "rgb", ExplicitVRBigEndian, {}, 0, None),
]
DCMTK_CASES = [  # dcmcjpeg's default quality (90)
    ("jpeg_baseline", "grey8", "+eb", None, 35.0),
    ("jpeg_baseline_rgb", "rgb", "+eb", None, 30.0),  # YBR_FULL_422
    ("jpeg_extended", "grey12", "+ee", None, 35.0),
    ("jpeg_lossless", "grey12", "+e1", 0, None),
]


def _psnr(a: np.ndarray, b: np.ndarray, peak: float) -> float:
    rmse = float(np.sqrt(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))
    return np.inf if rmse == 0 else 20 * np.log10(peak / rmse)


@pytest.fixture(scope="module")
def encoded(tmp_path_factory) -> dict:
    """Every case written into one folder: name -> (file, native file, max error, PSNR floor, peak)."""
    folder = tmp_path_factory.mktemp("codecs")
    images = _images()
    cases = {}
    for name, kind, ts, options, max_error, psnr in PYDICOM_CASES:
        native = _native(folder / "native", kind, images[kind])
        recode(native, folder / "studies" / f"{name}.dcm", ts, **options)
        cases[name] = (folder / "studies" / f"{name}.dcm", native, max_error, psnr, 255 if kind == "rgb" else 4095)
    require_binary("dcmcjpeg", reason="dcmtk is not installed (apt-get install dcmtk)")
    for name, kind, mode, max_error, psnr in DCMTK_CASES:
        native = _native(folder / "native", kind, images[kind])
        dcmtk_jpeg(native, folder / "studies" / f"{name}.dcm", mode)
        cases[name] = (folder / "studies" / f"{name}.dcm", native, max_error, psnr, 4095 if kind == "grey12" else 255)
    return {"folder": folder, "cases": cases}


CASE_NAMES = [c[0] for c in PYDICOM_CASES] + [c[0] for c in DCMTK_CASES]


@pytest.mark.parametrize("name", CASE_NAMES)
def test_each_transfer_syntax_decodes_like_the_native_file(encoded, name):
    path, native, max_error, psnr, peak = encoded["cases"][name]
    ds = dcmread(path)
    assert ds.file_meta.TransferSyntaxUID != dcmread(native).file_meta.TransferSyntaxUID
    info, frames = read_dicom(path)
    _, native_frames = read_dicom(native)
    assert len(frames) == len(native_frames) and info.frames == len(native_frames)
    for got, want in zip(frames, native_frames):
        assert got.shape == want.shape and got.dtype == want.dtype
        if max_error == 0:
            np.testing.assert_array_equal(got, want)
    stored, native_stored = ds.pixel_array, dcmread(native).pixel_array
    if max_error is not None:
        assert np.abs(stored.astype(np.int64) - native_stored).max() <= max_error
    else:
        assert _psnr(stored, native_stored, peak) >= psnr


def test_every_transfer_syntax_scores_and_lossless_ones_score_like_native(encoded, tmp_path):
    from runtime_bundle import make_bundle

    bundle = make_bundle(tmp_path / "bundle")
    folder = encoded["folder"]
    summary = run_triage(TriageConfig(bundle=str(bundle), source=[str(folder)], out=str(tmp_path / "out"),
                                      backend="ort-cpu", progress=False))
    with open(tmp_path / "out" / "worklist.csv") as f:
        rows = list(csv.DictReader(f))
    assert summary["n_not_scored"] == 0, [r["reason"] for r in rows if r["status"] != "scored"]
    score = {(Path(r["file"]).name, r["frame"]): float(r["raw_score"]) for r in rows}
    for name, (path, native, max_error, _, _) in encoded["cases"].items():
        frames = len(read_dicom(path)[1])
        keys = [(path.name, str(k) if frames > 1 else "") for k in range(frames)]
        assert all(k in score for k in keys), name
        if max_error == 0:
            assert [score[k] for k in keys] == [score[(native.name, k[1])] for k in keys], name


def test_compressed_files_train_as_they_score(encoded):
    """``--data`` reads the compressed files through the same reader as triage."""
    studies = encoded["folder"] / "studies"
    ds = open_source_dataset(str(studies))
    assert ds.report.skipped == {} and ds.report.kept == len(ds)
    for i in range(len(ds)):
        name, _, frame = ds.name(i).partition("#")
        np.testing.assert_array_equal(ds.image(i), read_dicom(name)[1][int(frame or 0)])


@pytest.mark.parametrize("bits", [8, 16])
def test_palette_color_goes_through_its_palette(tmp_path, bits):
    rng = np.random.RandomState(0)
    top = (1 << bits) - 1
    red, green, blue = (rng.randint(0, top + 1, 256) for _ in range(3))
    indices = rng.randint(0, 256, (2, 12, 10))  # two frames
    write_dicom(tmp_path / "pal.dcm", indices, photometric="PALETTE COLOR", palette=(0, bits, red, green, blue))
    info, frames = read_dicom(tmp_path / "pal.dcm")
    assert info.photometric == "PALETTE COLOR" and len(frames) == 2
    for frame, idx in zip(frames, indices):
        assert frame.dtype == (np.uint8 if bits == 8 else np.uint16) and frame.shape == (12, 10, 3)
        np.testing.assert_array_equal(frame, np.stack([red[idx], green[idx], blue[idx]], -1))


def test_palette_color_rle_scores(tmp_path):
    from runtime_bundle import make_bundle

    rng = np.random.RandomState(1)
    ramp = np.arange(256)
    write_dicom(tmp_path / "native" / "pal.dcm", rng.randint(0, 256, (30, 30)), photometric="PALETTE COLOR",
                palette=(0, 8, ramp, ramp[::-1], ramp // 2))
    recode(tmp_path / "native" / "pal.dcm", tmp_path / "studies" / "pal_rle.dcm", RLELossless)
    np.testing.assert_array_equal(read_dicom(tmp_path / "studies" / "pal_rle.dcm")[1][0],
                                  read_dicom(tmp_path / "native" / "pal.dcm")[1][0])
    summary = run_triage(TriageConfig(bundle=str(make_bundle(tmp_path / "bundle")), source=[str(tmp_path / "studies")],
                                      out=str(tmp_path / "out"), backend="ort-cpu", progress=False))
    assert summary["n_scored"] == 1


def test_ybr_full_is_converted_to_rgb(tmp_path):
    from pydicom.pixels import convert_color_space

    rgb = _images()["rgb"]
    ybr = convert_color_space(rgb, "RGB", "YBR_FULL")
    write_dicom(tmp_path / "ybr.dcm", ybr, photometric="YBR_FULL")
    frame = read_dicom(tmp_path / "ybr.dcm")[1][0]
    assert frame.dtype == np.uint8 and np.abs(frame.astype(int) - rgb).max() <= 2  # YCbCr rounding


def test_a_corrupt_codestream_and_an_undecodable_syntax_are_one_line_reasons(tmp_path):
    from pydicom.encaps import encapsulate

    write_dicom(tmp_path / "bad.dcm", np.zeros((4, 4)), transfer_syntax=JPEGLSLossless,
                raw_pixel_bytes=encapsulate([b"\xff\xd8junk\xff\xd9"]))
    with pytest.raises(EdgesslError, match="cannot decode pixel data") as err:
        read_dicom(tmp_path / "bad.dcm")
    assert "\n" not in str(err.value)
    mpeg2 = "1.2.840.10008.1.2.4.100"  # MPEG2 video: no decoder in pydicom
    write_dicom(tmp_path / "mpeg.dcm", np.zeros((4, 4)), transfer_syntax=mpeg2,
                raw_pixel_bytes=encapsulate([b"\x00\x00\x01\xb3"]))
    with pytest.raises(EdgesslError, match="unsupported transfer syntax"):
        read_dicom(tmp_path / "mpeg.dcm")


# pydicom's own test files that no decoder here reads, and why (pydicom's suite reads them with GDCM or
# expects the error)
BROKEN = {
    "JPEG-lossy.dcm": "misplaced marker segment",  # a non-conformant 12-bit JPEG stream
    "JPEG2000-embedded-sequence-delimiter.dcm": "failed to read the header",
    "MR_truncated.dcm": "less than expected",
    "badVR.dcm": "unreadable DICOM header",  # an IS value of '1A'
}


def test_pydicoms_test_files_of_every_kind_decode(recwarn):
    """The real-world corpus that ships in pydicom's wheel: every Part 10 file with pixel data decodes
    (every transfer syntax, palette, YBR, multi-frame), but the known-broken ones, each refused
    with its one-line reason."""
    import pydicom

    folder = Path(pydicom.__file__).parent / "data" / "test_files"
    read, kinds = 0, set()
    for path in sorted(folder.glob("*.dcm")):
        try:
            ds = dcmread(path, stop_before_pixels=False)
        except Exception:
            continue  # no file meta / preamble: not a Part 10 file (the reader says so; test_dicom.py)
        if "PixelData" not in ds or not getattr(ds, "file_meta", None) or "TransferSyntaxUID" not in ds.file_meta:
            continue
        if str(ds.get("PhotometricInterpretation", "")) == "":
            continue
        if path.name in BROKEN:
            with pytest.raises(EdgesslError, match=BROKEN[path.name]) as err:
                read_dicom(path)
            assert "\n" not in str(err.value)
            continue
        info, frames = read_dicom(path)
        assert len(frames) == info.frames
        read += 1
        kinds.add((info.transfer_syntax, info.photometric))
    syntaxes = {ts for ts, _ in kinds}
    assert read >= 55 and len(syntaxes) >= 12, sorted(kinds)
    assert {pi for _, pi in kinds} >= {"MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "PALETTE COLOR"}
