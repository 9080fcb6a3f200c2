"""DICOM reading: photometric interpretations, bit depths, rescale, windows, frames, and bad files."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from dicom_factory import write_dicom
from edgessl.edge_runtime.medical.dicom import DicomFile, is_dicom_file, read_dicom
from edgessl.edge_runtime.errors import EdgesslError


def _expected_minmax(v: np.ndarray, top: int, invert: bool = False) -> np.ndarray:
    v = v.astype(np.float64)
    y = (v - v.min()) / (v.max() - v.min())
    y = 1 - y if invert else y
    return np.floor(y * top + 0.5)


def test_monochrome2_8bit_full_range(tmp_path):
    stored = np.array([[0, 50], [100, 200]])
    write_dicom(tmp_path / "a.dcm", stored)
    info, frames = read_dicom(tmp_path / "a.dcm")
    assert info.photometric == "MONOCHROME2" and info.frames == 1
    assert frames[0].dtype == np.uint8
    np.testing.assert_array_equal(frames[0], [[0, 64], [128, 255]])


def test_monochrome1_is_inverted(tmp_path):
    stored = np.array([[0, 50], [100, 200]])
    write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1")
    _, frames = read_dicom(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(frames[0], [[255, 191], [128, 0]])
    np.testing.assert_array_equal(frames[0], _expected_minmax(stored, 255, invert=True))


def test_12bit_unsigned_gives_uint16(tmp_path):
    stored = np.array([[0, 4095], [2048, 1024]])
    write_dicom(tmp_path / "b.dcm", stored, bits_stored=12)
    _, frames = read_dicom(tmp_path / "b.dcm")
    assert frames[0].dtype == np.uint16
    np.testing.assert_array_equal(frames[0], _expected_minmax(stored, 65535))
    assert frames[0][0, 0] == 0 and frames[0][0, 1] == 65535


def test_12bit_signed_is_sign_extended(tmp_path):
    stored = np.array([[-2048, -5], [100, 2047]])
    write_dicom(tmp_path / "s.dcm", stored, bits_stored=12, signed=True)
    _, frames = read_dicom(tmp_path / "s.dcm")
    # read as unsigned, -5 would be 4091 and the brightest pixel
    np.testing.assert_array_equal(frames[0], _expected_minmax(stored, 65535))
    assert frames[0][0, 0] < frames[0][0, 1] < frames[0][1, 0] < frames[0][1, 1]


def test_16bit_signed_rescale_and_window(tmp_path):
    stored = np.array([[-1000, 0], [1000, 3000]])
    write_dicom(tmp_path / "ct.dcm", stored, bits_stored=16, signed=True, slope=1.0, intercept=-1024.0,
                window=(40.0, 400.0), modality="CT")
    info, frames = read_dicom(tmp_path / "ct.dcm")
    assert info.modality == "CT"
    # HU = stored - 1024 = [-2024, -1024, -24, 1976]; LINEAR window c=40 w=400 spans (-160, 239]
    y = (-24 - 39.5) / 399 + 0.5
    np.testing.assert_array_equal(frames[0], [[0, 0], [np.floor(y * 65535 + 0.5), 65535]])


def test_rescale_slope_applies_before_window(tmp_path):
    stored = np.array([[0, 10], [20, 30]])
    # v = 2 * stored + 10 = [10, 30, 50, 70]; window centred on 40.5 with width 41 maps v linearly over [20, 60]
    write_dicom(tmp_path / "r.dcm", stored, bits_stored=16, slope=2.0, intercept=10.0, window=(40.5, 41.0))
    _, frames = read_dicom(tmp_path / "r.dcm")
    v = stored * 2.0 + 10.0
    y = np.clip((v - 40.0) / 40.0 + 0.5, 0, 1)
    np.testing.assert_array_equal(frames[0], np.floor(y * 65535 + 0.5))
    assert frames[0][0, 0] == 0 and frames[0][1, 1] == 65535 and 0 < frames[0][0, 1] < frames[0][1, 0]


def test_multivalued_window_uses_first(tmp_path):
    stored = np.array([[0, 100], [200, 300]])
    write_dicom(tmp_path / "mv.dcm", stored, bits_stored=12, window=([150.5, 1000.0], [101.0, 2000.0]))
    _, frames = read_dicom(tmp_path / "mv.dcm")
    np.testing.assert_array_equal(frames[0], [[0, 0], [65535, 65535]])


def _pydicom_display(path, y_range: tuple[float, float] | None, top: int) -> np.ndarray:
    """What pydicom's own display pipeline gives for ``path`` (all frames), scaled to [0, top] from
    the VOI output range ``y_range`` the standard gives for the file (None: no VOI, min-max)."""
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    ds = pydicom.dcmread(path)
    stored = ds.pixel_array if int(ds.get("NumberOfFrames", 1)) > 1 else ds.pixel_array[None]
    out = apply_voi_lut(apply_modality_lut(stored, ds), ds).astype(np.float64)
    lo, hi = y_range if y_range is not None else (out.min(), out.max())
    y = (out - lo) / (hi - lo)
    return np.floor((1 - y if ds.PhotometricInterpretation == "MONOCHROME1" else y) * top + 0.5)


@pytest.mark.parametrize("function, formula", [
    ("LINEAR_EXACT", lambda v, c, w: np.clip((v - c) / w + 0.5, 0, 1)),
    ("SIGMOID", lambda v, c, w: 1 / (1 + np.exp(-4 * (v - c) / w))),
    ("LINEAR", lambda v, c, w: np.clip((v - (c - 0.5)) / (w - 1) + 0.5, 0, 1)),
])
def test_voi_functions_match_the_standard_and_pydicom(tmp_path, function, formula):
    stored = np.array([[0, 1000, 1500], [2000, 2500, 4095]])
    write_dicom(tmp_path / "w.dcm", stored, bits_stored=12, window=(2000.0, 1000.0), voi_function=function)
    _, frames = read_dicom(tmp_path / "w.dcm")
    np.testing.assert_allclose(frames[0], np.floor(formula(stored, 2000.0, 1000.0) * 65535 + 0.5), atol=1)
    np.testing.assert_allclose(frames[0], _pydicom_display(tmp_path / "w.dcm", (0, 4095), 65535)[0], atol=1)


def test_modality_lut_sequence_replaces_the_rescale(tmp_path):
    stored = np.array([[100, 101, 102], [103, 105, 120]])  # 120 is past the LUT's end: its last entry
    lut = [4000, 3000, 2500, 2000, 1000, 500, 250, 0]
    write_dicom(tmp_path / "mlut.dcm", stored, bits_stored=12, modality_lut=(100, 16, lut),
                slope=2.0, intercept=-7.0)  # a rescale too: the LUT sequence takes precedence
    _, frames = read_dicom(tmp_path / "mlut.dcm")
    mapped = np.array(lut, float)[np.clip(stored - 100, 0, len(lut) - 1)]
    np.testing.assert_array_equal(frames[0], np.floor((mapped - 0) / 4000 * 65535 + 0.5))
    np.testing.assert_array_equal(frames[0], _pydicom_display(tmp_path / "mlut.dcm", None, 65535)[0])


def test_voi_lut_sequence_is_preferred_to_the_window_and_scaled_by_its_bits(tmp_path):
    stored = np.array([[10, 11, 12], [13, 9, 14]])  # 9 is before the first mapped value: the first entry
    lut = [0, 40, 80, 160, 200]
    write_dicom(tmp_path / "vlut.dcm", stored, bits_stored=12, voi_luts=[(10, 8, lut)], window=(5.0, 2.0))
    _, frames = read_dicom(tmp_path / "vlut.dcm")
    shown = np.array(lut, float)[np.clip(stored - 10, 0, len(lut) - 1)]
    np.testing.assert_array_equal(frames[0], np.floor(shown / 255 * 65535 + 0.5))  # 8-bit LUT: 0..255
    np.testing.assert_array_equal(frames[0], _pydicom_display(tmp_path / "vlut.dcm", (0, 255), 65535)[0])


def test_monochrome1_multiframe_through_both_luts(tmp_path):
    rng = np.random.RandomState(3)
    stored = rng.randint(0, 16, size=(3, 4, 5))
    modality = list(range(1000, 1016))  # identity plus 1000
    voi = [int(v) for v in np.linspace(0, 65535, 16)]
    write_dicom(tmp_path / "mf.dcm", stored, bits_stored=12, photometric="MONOCHROME1",
                modality_lut=(0, 16, modality), voi_luts=[(1000, 16, voi), (1000, 16, voi[::-1])])
    info, frames = read_dicom(tmp_path / "mf.dcm")
    assert info.frames == 3
    want = _pydicom_display(tmp_path / "mf.dcm", (0, 65535), 65535)
    for f, s, w in zip(frames, stored, want):
        np.testing.assert_array_equal(f, w)
        np.testing.assert_array_equal(f, 65535 - np.array(voi)[s])  # the first view, inverted
        assert f[s == 15].max(initial=0) == 0 if (s == 15).any() else True  # brightest stored -> black


@pytest.mark.parametrize("kwargs, reason", [
    ({"voi_luts": [(0, 9, [0, 1, 2])]}, "bits per LUT entry"),
    ({"window": (100.0, 0.5)}, "Window Width"),
    ({"window": (100.0, 10.0), "voi_function": "CUBIC"}, "VOI LUT Function"),
])
def test_luts_and_windows_the_standard_forbids_are_refused(tmp_path, kwargs, reason):
    write_dicom(tmp_path / "bad.dcm", np.arange(12).reshape(3, 4), bits_stored=12, **kwargs)
    with pytest.raises(EdgesslError, match=f"cannot apply its modality/VOI LUT or window.*{reason}"):
        read_dicom(tmp_path / "bad.dcm")


def test_multiframe_frame_by_frame(tmp_path):
    rng = np.random.RandomState(0)
    stored = rng.randint(0, 4096, size=(3, 5, 6))
    write_dicom(tmp_path / "mf.dcm", stored, bits_stored=12, photometric="MONOCHROME1")
    info, frames = read_dicom(tmp_path / "mf.dcm")
    assert info.frames == 3 and len(frames) == 3
    for f, s in zip(frames, stored):
        assert f.shape == (5, 6) and f.dtype == np.uint16
        np.testing.assert_array_equal(f, _expected_minmax(s, 65535, invert=True))


def test_rgb_passes_through(tmp_path):
    rgb = np.random.RandomState(1).randint(0, 256, size=(4, 5, 3)).astype(np.uint8)
    write_dicom(tmp_path / "rgb.dcm", rgb, photometric="RGB")
    _, frames = read_dicom(tmp_path / "rgb.dcm")
    np.testing.assert_array_equal(frames[0], rgb)


def test_uids_and_modality(tmp_path):
    ds = write_dicom(tmp_path / "u.dcm", np.zeros((4, 4)), modality="DX", study_uid="1.2.3", series_uid="1.2.3.4")
    f = DicomFile(tmp_path / "u.dcm")
    assert (f.info.study_uid, f.info.series_uid, f.info.modality) == ("1.2.3", "1.2.3.4", "DX")
    assert f.info.instance_uid == ds.SOPInstanceUID
    assert f.info.transfer_syntax == "Explicit VR Little Endian"


def test_dicom_detected_without_suffix(tmp_path):
    write_dicom(tmp_path / "IM0001", np.zeros((4, 4)))
    (tmp_path / "x.png").write_bytes(b"not an image")
    assert is_dicom_file(tmp_path / "IM0001") and not is_dicom_file(tmp_path / "x.png")


def test_flat_image_is_black(tmp_path):
    write_dicom(tmp_path / "flat.dcm", np.full((3, 3), 7))
    _, frames = read_dicom(tmp_path / "flat.dcm")
    assert not frames[0].any()


# -- bad input: an EdgesslError whose message is the reason, never a crash


def test_png_named_dcm(tmp_path):
    ok, png = cv2.imencode(".png", np.zeros((4, 4), np.uint8))
    (tmp_path / "fake.dcm").write_bytes(png.tobytes())
    with pytest.raises(EdgesslError, match="not a DICOM file"):
        read_dicom(tmp_path / "fake.dcm")


def test_empty_and_truncated_files(tmp_path):
    (tmp_path / "empty.dcm").write_bytes(b"")
    with pytest.raises(EdgesslError):
        read_dicom(tmp_path / "empty.dcm")
    write_dicom(tmp_path / "full.dcm", np.arange(400).reshape(20, 20), bits_stored=12)
    data = (tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(data[: len(data) - 300])
    with pytest.raises(EdgesslError):
        read_dicom(tmp_path / "cut.dcm")


def test_no_pixel_data_keeps_uids(tmp_path):
    write_dicom(tmp_path / "sr.dcm", np.zeros((4, 4)), pixel_data=False, study_uid="9.8.7")
    f = DicomFile(tmp_path / "sr.dcm")
    assert f.info.study_uid == "9.8.7"
    with pytest.raises(EdgesslError, match="no pixel data"):
        list(f.frames())


def test_unsupported_photometric(tmp_path):
    write_dicom(tmp_path / "hsv.dcm", np.zeros((4, 4)), photometric="HSV")  # retired
    with pytest.raises(EdgesslError, match="photometric interpretation 'HSV'"):
        read_dicom(tmp_path / "hsv.dcm")


def test_missing_pydicom_is_a_clear_error(tmp_path, monkeypatch):
    write_dicom(tmp_path / "a.dcm", np.zeros((4, 4)))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(EdgesslError, match=r"pip install 'edgessl\[medical\]'"):
        read_dicom(tmp_path / "a.dcm")
