"""Fuzzing with hypothesis: ROS image messages, image bytes, DICOM headers and bundle manifests.

The contract under test: whatever the input, the code returns a valid image (``HxW`` or ``HxWx3``,
uint8/uint16) or a loaded pipeline, or raises ``EdgesslError`` with a one-line message; nothing
else escapes; and the scoring loop goes on past bad inputs. Examples are capped so the whole file
runs in well under a minute (``deadline=None``: a loaded CI machine must not turn slowness into a
failure; ``database=None``: nothing is written into the checkout).
"""

from __future__ import annotations

import json
import shutil
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

from requires import require

require("hypothesis")
from hypothesis import HealthCheck, assume, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from hypothesis.control import currently_in_test_context  # noqa: E402

from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.bundle import Bundle, seal  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.edge_runtime.images import decode_image  # noqa: E402
from edgessl.edge_runtime.pipeline import Pipeline  # noqa: E402
from edgessl.edge_runtime.ros.image import (RAW_ENCODINGS, image_from_compressed, image_from_raw,  # noqa: E402
                                            raw_from_image)
from runtime_bundle import make_bundle  # noqa: E402

FAST = settings(max_examples=150, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
SLOW = settings(FAST, max_examples=40)


def _event(what: str) -> None:
    """Count an outcome for --hypothesis-show-statistics (only inside a hypothesis test)."""
    if currently_in_test_context():
        event(what)


@contextmanager
def only_edgessl_errors():
    """Let the block succeed, or fail with a one-line ``EdgesslError``; anything else fails the test."""
    try:
        yield
        _event("accepted")
    except EdgesslError as exc:
        _event("refused with EdgesslError")
        assert "\n" not in str(exc) and str(exc), repr(str(exc))


def check_image(img) -> None:
    assert isinstance(img, np.ndarray) and img.dtype in (np.uint8, np.uint16)
    assert img.ndim == 2 or (img.ndim == 3 and img.shape[2] == 3)
    assert min(img.shape[:2]) >= 1


# -- ROS image messages -------------------------------------------------------------------------

ENCODINGS = st.sampled_from([*RAW_ENCODINGS, "32FC1", "yuv422", "", "MONO8", "bayer_rggb8"])


@FAST
@given(encoding=ENCODINGS, height=st.integers(-2, 12), width=st.integers(-2, 12),
       step=st.integers(-4, 64) | st.integers(-2, 6).map(lambda pad: ("row", pad)),
       bigendian=st.sampled_from([0, 1, 2, True, False]), extra=st.just(0) | st.integers(-8, 8),
       seed=st.integers(0, 2**16))
def test_ros_raw_messages(encoding, height, width, step, bigendian, extra, seed):
    if isinstance(step, tuple):  # near the row size the encoding implies: the interesting region
        enc = RAW_ENCODINGS.get(encoding)
        step = width * (enc.channels * enc.bytes_per_channel if enc else 1) + step[1]
    size = max(0, step * max(height, 0) + extra)
    data = np.random.RandomState(seed).randint(0, 256, size, dtype=np.uint8).tobytes()
    with only_edgessl_errors():
        img = image_from_raw(encoding, height, width, step, bigendian, data)
        check_image(img)
        assert img.shape[:2] == (height, width)


@FAST
@given(encoding=st.sampled_from(sorted(RAW_ENCODINGS)), height=st.integers(1, 9), width=st.integers(1, 9),
       padding=st.integers(0, 5), bigendian=st.booleans(), seed=st.integers(0, 2**16))
def test_ros_raw_round_trip(encoding, height, width, padding, bigendian, seed):
    rng = np.random.RandomState(seed)
    grey = RAW_ENCODINGS[encoding].channels == 1
    dtype = np.uint16 if encoding == "mono16" else np.uint8
    img = rng.randint(0, np.iinfo(dtype).max + 1, (height, width) if grey else (height, width, 3)).astype(dtype)
    raw = raw_from_image(img, encoding, padding, bigendian)
    back = image_from_raw(raw.encoding, raw.height, raw.width, raw.step, raw.is_bigendian, raw.data)
    assert back.dtype == img.dtype and np.array_equal(back, img)


@FAST
@given(fmt=st.sampled_from(["jpeg", "png", "rgb8; jpeg compressed bgr8", "compressedDepth png", "tiff", ""]),
       data=st.binary(max_size=64), keep=st.sampled_from(["none", "png", "jpeg"]), cut=st.just(0) | st.integers(1, 300))
def test_ros_compressed_messages(fmt, data, keep, cut, valid_files):
    whole = valid_files[keep]
    payload = whole[: max(0, len(whole) - cut)] + (data if cut or keep == "none" else b"")
    with only_edgessl_errors():
        check_image(image_from_compressed(fmt, payload))


# -- image bytes ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def valid_files() -> dict[str, bytes]:
    rng = np.random.RandomState(0)
    img = rng.randint(0, 256, (12, 10, 3), dtype=np.uint8)
    files = {"none": b""}
    for kind, ext in (("png", ".png"), ("jpeg", ".jpg"), ("bmp", ".bmp"), ("tiff", ".tiff"), ("webp", ".webp")):
        ok, buf = cv2.imencode(ext, img)
        files[kind] = buf.tobytes()
    files["png16"] = cv2.imencode(".png", rng.randint(0, 65536, (7, 9), dtype=np.uint16))[1].tobytes()
    files["png_rgba"] = cv2.imencode(".png", rng.randint(0, 256, (5, 6, 4), dtype=np.uint8))[1].tobytes()
    return files


@FAST
@given(kind=st.sampled_from(["png", "jpeg", "bmp", "tiff", "webp", "png16", "png_rgba"]),
       cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
       tail=st.binary(max_size=32))
def test_image_bytes(kind, cut, flips, tail, valid_files):
    data = bytearray(valid_files[kind][: len(valid_files[kind]) - cut] if cut else valid_files[kind])
    for pos, value in flips:
        if data:
            data[pos % len(data)] = value
    with only_edgessl_errors():
        check_image(decode_image(bytes(data) + tail, "fuzzed"))


@FAST
@given(data=st.binary(max_size=512))
def test_random_bytes_are_not_images(data):
    with only_edgessl_errors():
        check_image(decode_image(data, "random"))


# -- DICOM headers ----------------------------------------------------------------------------------

TRANSFER_SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.4.50",
                     "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.5", "1.2.3.4"]
FLOATS = (st.floats(-1e6, 1e6, allow_nan=False).map(lambda v: float(f"{v:.6g}"))  # fits a DICOM DS (16 chars)
          | st.sampled_from([0.0, 1e-30, -0.0, float("inf")]))


@settings(SLOW, max_examples=30)  # each example writes and reads a file
@given(bits=st.sampled_from([1, 7, 8, 10, 12, 16]), signed=st.booleans(),
       photometric=st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "XYZ"]),
       shape=st.sampled_from([(4, 5), (3, 4, 5), (4, 5, 3), (1, 1)]), slope=st.none() | FLOATS,
       intercept=FLOATS, window=st.none() | st.tuples(FLOATS, FLOATS),
       voi=st.sampled_from([None, "LINEAR", "SIGMOID", "LINEAR_EXACT", "BOGUS"]),
       syntax=st.sampled_from(TRANSFER_SYNTAXES), pixel_bytes=st.none() | st.binary(max_size=80),
       seed=st.integers(0, 1000))
def test_dicom_headers(tmp_path, bits, signed, photometric, shape, slope, intercept, window, voi, syntax,
                       pixel_bytes, seed):
    from dicom_factory import write_dicom

    from edgessl.edge_runtime.medical.dicom import read_dicom

    hi = (1 << bits) - 1
    stored = np.random.RandomState(seed).randint(0, hi + 1, shape) - (((hi + 1) // 2) if signed else 0)
    if pixel_bytes is not None:  # short pixel data (excess data: test_dicom_excess_pixel_data below)
        pixel_bytes = pixel_bytes[: max(0, stored.size * (1 if bits <= 8 else 2) - 2)]
    path = tmp_path / f"f{seed}.dcm"
    try:
        write_dicom(path, stored, bits_stored=bits, signed=signed, photometric=photometric, slope=slope,
                    intercept=intercept, window=window, voi_function=voi, transfer_syntax=syntax,
                    raw_pixel_bytes=pixel_bytes)
    except Exception:  # pydicom refused to write this header: nothing to read
        assume(False)
    with only_edgessl_errors():
        info, frames = read_dicom(path)
        for frame in frames:
            check_image(frame)


def test_dicom_excess_pixel_data(tmp_path):
    from dicom_factory import write_dicom

    from edgessl.edge_runtime.medical.dicom import read_dicom

    write_dicom(tmp_path / "x.dcm", np.zeros((1, 1), int), raw_pixel_bytes=b"\0\0\0")  # 4 bytes for 1 pixel
    with only_edgessl_errors():
        for frame in read_dicom(tmp_path / "x.dcm")[1]:
            check_image(frame)


def test_dicom_garbled_value_representation(tmp_path):
    from dicom_factory import write_dicom

    from edgessl.edge_runtime.medical.dicom import read_dicom

    write_dicom(tmp_path / "ok.dcm", np.zeros((4, 4), int))
    data = (tmp_path / "ok.dcm").read_bytes()
    study_uid = b"\x20\x00\x0d\x00UI"  # (0020,000D) StudyInstanceUID, explicit VR little endian
    assert study_uid in data
    (tmp_path / "bad.dcm").write_bytes(data.replace(study_uid, study_uid[:4] + b"U\x00"))
    with only_edgessl_errors():
        read_dicom(tmp_path / "bad.dcm")


@SLOW
@given(flips=st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 255)), min_size=1, max_size=8),
       cut=st.integers(0, 300))
def test_dicom_bytes(tmp_path_factory, flips, cut):
    from dicom_factory import write_dicom

    from edgessl.edge_runtime.medical.dicom import read_dicom

    d = tmp_path_factory.mktemp("dcm")
    write_dicom(d / "ok.dcm", np.arange(64).reshape(8, 8) * 1000, bits_stored=16, slope=0.5, intercept=-10.0,
                window=(2000.0, 4000.0), modality="CT")
    data = bytearray((d / "ok.dcm").read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    (d / "fuzzed.dcm").write_bytes(bytes(data[: len(data) - cut]))
    with only_edgessl_errors():
        for frame in read_dicom(d / "fuzzed.dcm")[1]:
            check_image(frame)


# -- bundle manifests -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("fuzz") / "bundle", "patch")


JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 300) | FLOATS | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=6)


def _paths(m: dict, prefix=()) -> list[tuple]:
    out = []
    for k, v in m.items():
        if k in ("files", "seal", "format", "manifest_version"):
            continue
        out.append((*prefix, k))
        if isinstance(v, dict):
            out += _paths(v, (*prefix, k))
    return out


@SLOW
@given(data=st.data())
def test_manifests(clean_bundle, tmp_path_factory, data):
    b = tmp_path_factory.mktemp("m") / "bundle"
    shutil.copytree(clean_bundle, b)
    m = json.loads((b / "manifest.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(m)))
        parent = m
        for k in path[:-1]:
            parent = parent[k]
        if data.draw(st.booleans()):
            parent[path[-1]] = data.draw(JSON)
        else:
            del parent[path[-1]]
    resealed = data.draw(st.booleans())  # sealed: the deeper readers see the garbage too
    if resealed:
        seal(b, m)
    else:
        (b / "manifest.json").write_text(json.dumps(m))
    with only_edgessl_errors():
        pipe = Pipeline.load(b, backend="ort-cpu")
        r = pipe.score(np.full((20, 20), 128, np.uint8))
        assert np.isfinite(r.raw_score) or np.isnan(r.raw_score)


@FAST
@given(raw=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_raw_manifest_bytes(tmp_path_factory, raw):
    b = tmp_path_factory.mktemp("raw")
    (b / "manifest.json").write_bytes(raw)
    with only_edgessl_errors():
        Bundle.load(b)


# -- the run goes on ------------------------------------------------------------------------------

@settings(SLOW, max_examples=8)
@given(blobs=st.lists(st.binary(max_size=300), min_size=1, max_size=4))
def test_run_scores_past_fuzzed_files(clean_bundle, tmp_path_factory, valid_files, blobs):
    d = tmp_path_factory.mktemp("files")
    (d / "good.png").write_bytes(valid_files["png"])
    for i, blob in enumerate(blobs):
        (d / f"bad{i}.png").write_bytes(blob)
    out = d / "results.jsonl"
    assert main(["run", "--bundle", str(clean_bundle), "--source", str(d), "--out", str(out)]) == 0
    records = {Path(r["name"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert len(records) == len(blobs) + 1 and records["good.png"]["error"] is None
    assert all(r["error"] is None or "\n" not in r["error"] for r in records.values())
