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

Colour files (``RGB`` or ``YBR_*``, converted to RGB by pydicom or the codec) pass through as
``HxWx3``: uint8 when BitsStored <= 8, else scaled to the full uint16 range. ``PALETTE COLOR`` goes
through its palette (``pydicom.pixels.apply_color_lut``, segmented palettes too) to RGB: uint8 for
8-bit palette entries, uint16 for 16-bit ones.

Pixel data in every transfer syntax pydicom decodes with the plugins of the ``medical`` extra:
native (little and big endian, implicit or explicit VR), deflated, RLE (``pylibjpeg-rle``), JPEG
baseline, extended and lossless (``pylibjpeg-libjpeg``), JPEG-LS (``pyjpegls``) and JPEG 2000
(``pylibjpeg-openjpeg``). Multi-frame files give one image per frame (the LUTs and windows of the
top-level dataset apply to every frame). Anything that cannot be shown to the model (not a DICOM,
no pixel data, a transfer syntax without an installed decoder, pixel data its codec refuses, an
unsupported photometric interpretation, a LUT or window the standard does not allow) raises
``EdgesslError`` whose message is the reason, on one line; the header's UIDs and modality are
available before the pixels are decoded, so callers can record them either way.

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
PALETTE = "PALETTE COLOR"


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


def check_pixel_data(ds: Any, name: str) -> None:
    """Refuse an image whose pixel data contradicts its header (``EdgesslError``, the reason): none;
    native pixel data shorter than Rows x Columns x SamplesPerPixel x BitsAllocated x NumberOfFrames
    needs; encapsulated pixel data that is not a sequence of items. The codestreams are not decoded."""
    from pydicom.encaps import generate_fragments
    from pydicom.pixels.utils import get_expected_length

    if "PixelData" not in ds:
        raise EdgesslError(f"{name}: no pixel data")
    try:
        if ds.file_meta.TransferSyntaxUID.is_encapsulated:
            if not any(True for _ in generate_fragments(ds.PixelData)):
                raise ValueError("no fragments")
            return
        expected, actual = get_expected_length(ds, "bytes"), len(ds.PixelData)
    except Exception as exc:  # missing or garbled Rows, Columns, BitsAllocated, items
        raise EdgesslError(f"{name}: malformed pixel data ({type(exc).__name__}: {' '.join(str(exc).split())})") from None
    if actual < expected:
        raise EdgesslError(f"{name}: pixel data is {actual} bytes but its header ({ds.Rows} x {ds.Columns}, "
                           f"{ds.get('NumberOfFrames', 1)} frame(s), {ds.SamplesPerPixel} sample(s) of "
                           f"{ds.BitsAllocated} bits) needs {expected}")


def colour_frames(stored: np.ndarray, bits: int) -> Iterator[np.ndarray]:
    """Each RGB frame of ``stored`` (``F x H x W x 3``): uint8 for up to 8 bits, else uint16 scaled
    from ``bits`` to 0 .. 65535."""
    for frame in stored:
        if bits <= 8:
            yield np.ascontiguousarray(frame.astype(np.uint8))
        else:
            scaled = np.floor(frame.astype(np.float64) * (65535.0 / (2.0 ** bits - 1)) + 0.5)
            yield np.clip(scaled, 0, 65535).astype(np.uint16)


def palette_frames(ds: Any, stored: np.ndarray, name: str) -> Iterator[np.ndarray]:
    """Each frame of palette indices (``F x H x W``) through the dataset's palette, as RGB: uint8 when
    the palette descriptor says 8-bit entries (whatever word size stores them), else uint16; an alpha
    palette is dropped."""
    from pydicom.pixels import apply_color_lut

    for frame in stored:
        try:
            rgb = apply_color_lut(frame, ds)
            bits = int(ds.RedPaletteColorLookupTableDescriptor[2])
        except Exception as exc:  # a missing, inconsistent or unsupported palette
            raise EdgesslError(f"{name}: cannot apply its palette ({type(exc).__name__}: {exc})") from None
        yield np.ascontiguousarray(rgb[..., :3].astype(np.uint8 if bits <= 8 else np.uint16))


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
        if pi not in GREY + COLOUR + (PALETTE,):
            raise EdgesslError(f"{name}: photometric interpretation {pi!r} is not supported "
                               f"(supported: {', '.join(GREY + COLOUR + (PALETTE,))})")
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
        except Exception as exc:  # decoders raise many types for corrupt pixel data (some over several lines)
            why = " ".join(str(exc).split())
            raise EdgesslError(f"{self.path}: cannot decode pixel data ({type(exc).__name__}: {why})") from None
        grey = self.info.photometric not in COLOUR  # one sample per pixel: grey or palette indices
        if self.info.frames == 1 or arr.ndim == (2 if grey else 3):
            arr = arr[None]
        return arr

    def frames(self) -> Iterator[np.ndarray]:
        """Each frame as grey (uint8/uint16, per the module docstring) or RGB uint8."""
        try:
            self.check_decodable()
            arr = self._stored()
            if self.info.photometric in COLOUR:
                frames = list(colour_frames(arr, int(self.dataset.get("BitsStored", 8))))
            elif self.info.photometric == PALETTE:
                frames = list(palette_frames(self.dataset, arr, str(self.path)))
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
