"""DICOM files to images in the edgessl convention (``pydicom``, imported only when a DICOM is read).

The grey value shown to the model is the standard's display pipeline, computed by pydicom's own
implementations of it (``pydicom.pixels``):

    stored   = PixelData masked to BitsStored bits, sign-extended when PixelRepresentation = 1
    v        = apply_modality_lut(stored)      Modality LUT Sequence, else RescaleSlope/Intercept (PS3.3 C.11.1)
    out      = apply_voi_lut(v)                VOI LUT Sequence (first), else WindowCenter/Width with
                                               VOILUTFunction LINEAR / LINEAR_EXACT / SIGMOID (first
                                               values when multi-valued) (PS3.3 C.11.2)
    y        = out scaled from the VOI's output range to [0, 1]: 0 .. 2^n - 1 for an n-bit VOI LUT,
               the window's range as pydicom computes it; with neither, the frame's own range
               (v - min v) / (max v - min v), 0 when flat
    y        = 1 - y for MONOCHROME1 (low values are white)
    pixel    = round(y * 255) as uint8 when BitsStored <= 8, else round(y * 65535) as uint16

RGB files (8-bit, ``RGB`` or ``YBR_*``, converted to RGB by pydicom) pass through as ``HxWx3`` uint8.
Multi-frame files give one image per frame (the LUTs and windows of the top-level dataset apply to
every frame). Anything that cannot be shown to the model (not a DICOM, no pixel data, a transfer
syntax without an installed decoder, an unsupported photometric interpretation, a LUT or window the
standard does not allow) raises ``EdgesslError`` whose message is the reason; the header's UIDs and
modality are available before the pixels are decoded, so callers can record them either way.

**Limits before decoding.** The header is parsed with the pixel data deferred (not read), and
Rows x Columns x NumberOfFrames is checked against the pixel limit (``images.pixel_limit``)
before any pixel is read or decoded: an 824-byte RLE file can declare 65535 x 65535 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import EdgesslError
from ..images import CAMERA_PIXELS, check_pixels

DICOM_SUFFIXES = (".dcm", ".dicom")
DEFER_BYTES = 1 << 16  # elements larger than this (the pixel data) are read only when used
GREY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")


def _pydicom():
    try:
        import pydicom
    except ImportError:
        raise EdgesslError("reading DICOM needs pydicom: pip install 'edgessl[medical]'") from None
    return pydicom


def is_dicom_file(path: Path) -> bool:
    """A ``.dcm``/``.dicom`` name, or the ``DICM`` magic at byte 128 (Part 10 files without a suffix)."""
    if not path.is_file():
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class DicomInfo:
    """What identifies a DICOM instance (empty strings when a tag is absent)."""

    study_uid: str
    series_uid: str
    instance_uid: str
    modality: str
    photometric: str
    transfer_syntax: str
    frames: int


def voi_range(ds: Any) -> tuple[float, float] | None:
    """The output range of the VOI transform ``apply_voi_lut`` applies to ``ds`` (None: it applies none).

    A VOI LUT (which pydicom prefers over a window) outputs 0 .. 2^n - 1 for n bits per entry
    (LUTDescriptor's third value); a window's range depends on the bit depth and the rescale, so it is
    read from pydicom itself: the window maps -inf and +inf to the two ends of its range.
    """
    from pydicom.pixels import apply_voi_lut

    seq = ds.get("VOILUTSequence")
    if seq and seq[0].get("LUTDescriptor") is not None and seq[0].get("LUTData") is not None:
        return 0.0, float(2 ** int(seq[0].LUTDescriptor[2]) - 1)
    if ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        lo, hi = apply_voi_lut(np.array([-np.inf, np.inf]), ds)
        return float(lo), float(hi)
    return None


def grey_frames(ds: Any, stored: np.ndarray, name: str) -> list[np.ndarray]:
    """Each frame of ``stored`` (``F x H x W`` stored values) as the grey image of the module docstring."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        values = apply_modality_lut(stored, ds)
        span = voi_range(ds)
        shown = np.asarray(apply_voi_lut(values, ds) if span is not None else values, np.float64)
    except (ValueError, NotImplementedError, TypeError, KeyError, IndexError, AttributeError) as exc:  # not allowed
        raise EdgesslError(f"{name}: cannot apply its modality/VOI LUT or window ({exc})") from None
    dtype, top = (np.uint8, 255) if int(ds.get("BitsStored", 8)) <= 8 else (np.uint16, 65535)
    invert = str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1"
    frames = []
    for frame in shown:
        lo, hi = span if span is not None else (float(frame.min()), float(frame.max()))
        y = np.clip((frame - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(frame)
        frames.append(np.floor((1.0 - y if invert else y) * top + 0.5).astype(dtype))
    return frames


class DicomFile:
    """A parsed DICOM file: ``info`` from the header; ``frames()`` decodes the pixels (when they are
    within ``max_pixels``)."""

    def __init__(self, path: str | Path, max_pixels: int = CAMERA_PIXELS):
        self.path, self.max_pixels = Path(path), max_pixels
        pydicom = _pydicom()
        from pydicom.errors import InvalidDicomError

        try:
            self.dataset = pydicom.dcmread(self.path, defer_size=DEFER_BYTES)
        except InvalidDicomError:
            raise EdgesslError(f"{self.path}: not a DICOM file (no DICM preamble)") from None
        except OSError as exc:
            raise EdgesslError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        except Exception as exc:  # pydicom raises assorted errors on truncated/garbled files
            raise EdgesslError(f"{self.path}: unreadable DICOM ({type(exc).__name__}: {exc})") from None
        try:
            self.info = self._info()
        except Exception as exc:  # pydicom converts elements lazily: a garbled one raises here, in many types
            raise EdgesslError(f"{self.path}: unreadable DICOM header ({type(exc).__name__}: {exc})") from None

    def _info(self) -> DicomInfo:
        ds = self.dataset
        meta = getattr(ds, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None else None
        return DicomInfo(
            study_uid=str(ds.get("StudyInstanceUID", "")),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            instance_uid=str(ds.get("SOPInstanceUID", "")),
            modality=str(ds.get("Modality", "")),
            photometric=str(ds.get("PhotometricInterpretation", "")),
            transfer_syntax=str(ts.name if ts is not None else ""),
            frames=int(ds.get("NumberOfFrames", 1) or 1),
        )

    def check_decodable(self) -> None:
        from pydicom.pixels import get_decoder

        ds, name = self.dataset, str(self.path)
        if "PixelData" not in ds:
            kind = "FloatPixelData" if ("FloatPixelData" in ds or "DoubleFloatPixelData" in ds) else None
            raise EdgesslError(f"{name}: no pixel data" + (f" ({kind} is not supported)" if kind else ""))
        ts = ds.file_meta.get("TransferSyntaxUID")
        if ts is None:
            raise EdgesslError(f"{name}: no transfer syntax in the file meta information")
        try:
            decoder = get_decoder(ts)
        except NotImplementedError:
            raise EdgesslError(f"{name}: unsupported transfer syntax {ts} ({ts.name})") from None
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies)
            raise EdgesslError(f"{name}: unsupported transfer syntax {ts.name}: no decoder installed ({needs})")
        pi = self.info.photometric
        if pi not in GREY + COLOUR:
            raise EdgesslError(f"{name}: photometric interpretation {pi!r} is not supported "
                               f"(supported: {', '.join(GREY + COLOUR)})")
        if pi in COLOUR and int(ds.get("BitsStored", 8)) > 8:
            raise EdgesslError(f"{name}: {ds.BitsStored}-bit colour is not supported (8-bit RGB only)")
        bits, high = int(ds.get("BitsStored", 0)), int(ds.get("HighBit", -1))
        if high != bits - 1:
            raise EdgesslError(f"{name}: HighBit {high} with BitsStored {bits} is not supported "
                               "(expects HighBit = BitsStored - 1)")
        check_pixels(int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0), self.max_pixels, name,
                     self.info.frames)

    def _stored(self) -> np.ndarray:
        """All frames' stored values, ``F x H x W`` (grey) or ``F x H x W x 3`` (RGB)."""
        try:
            # pixel data longer than NumberOfFrames says: the frames it declares, not the excess
            self.dataset.pixel_array_options(allow_excess_frames=False)
            arr = self.dataset.pixel_array
        except Exception as exc:  # decoders raise many types for corrupt pixel data
            raise EdgesslError(f"{self.path}: cannot decode pixel data ({type(exc).__name__}: {exc})") from None
        grey = self.info.photometric in GREY
        if self.info.frames == 1 or arr.ndim == (2 if grey else 3):
            arr = arr[None]
        return arr

    def frames(self) -> Iterator[np.ndarray]:
        """Each frame as grey (uint8/uint16, per the module docstring) or RGB uint8."""
        try:
            self.check_decodable()
            arr = self._stored()
            if self.info.photometric in COLOUR:
                frames = [np.ascontiguousarray(frame.astype(np.uint8)) for frame in arr]
            else:
                frames = grey_frames(self.dataset, arr, str(self.path))
        except EdgesslError:
            raise
        except Exception as exc:  # a garbled element read lazily by the checks or the LUTs
            raise EdgesslError(f"{self.path}: unreadable DICOM ({type(exc).__name__}: {exc})") from None
        yield from frames


def read_dicom(path: str | Path, max_pixels: int = CAMERA_PIXELS) -> tuple[DicomInfo, list[np.ndarray]]:
    """Header info and every frame of a DICOM file, decoded (see the module docstring)."""
    f = DicomFile(path, max_pixels)
    return f.info, list(f.frames())
