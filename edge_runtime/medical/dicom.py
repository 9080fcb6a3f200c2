"""DICOM files to images in the edgessl convention (``pydicom``, imported only when a DICOM is read).

Per frame, the grey value shown to the model is computed as the standard prescribes:

    stored   = PixelData masked to BitsStored bits, sign-extended when PixelRepresentation = 1
    v        = stored * RescaleSlope + RescaleIntercept                       (modality LUT, PS3.3 C.11.1)
    y        = VOI(v) in [0, 1]:                                              (VOI LUT, PS3.3 C.11.2)
               WindowCenter c / WindowWidth w present (first value when multi-valued):
                 LINEAR (default)  clip((v - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
                 LINEAR_EXACT      clip((v - c) / w + 0.5, 0, 1)
                 SIGMOID           1 / (1 + exp(-4 (v - c) / w))
               otherwise the frame's full range: (v - min v) / (max v - min v)  (0 when flat)
    y        = 1 - y for MONOCHROME1 (low values are white)
    pixel    = round(y * 255) as uint8 when BitsStored <= 8, else round(y * 65535) as uint16

RGB files (8-bit, ``RGB`` or ``YBR_*``, converted to RGB by pydicom) pass through as ``HxWx3`` uint8.
Multi-frame files give one image per frame. Anything that cannot be shown to the model (not a
DICOM, no pixel data, a transfer syntax without an installed decoder, an unsupported photometric
interpretation) raises ``EdgesslError`` whose message is the reason; the header's UIDs and
modality are available before the pixels are decoded, so callers can record them either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..errors import EdgesslError

DICOM_SUFFIXES = (".dcm", ".dicom")
GREY = ("MONOCHROME1", "MONOCHROME2")
COLOUR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


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


@dataclass(frozen=True)
class GreyMapping:
    """Stored values to display grey: rescale, then VOI window (or full range), then MONOCHROME1 inversion."""

    slope: float = 1.0
    intercept: float = 0.0
    window: tuple[float, float] | None = None  # (centre, width)
    voi_function: str = "LINEAR"
    invert: bool = False
    bits: int = 8  # output: 8 -> uint8, 16 -> uint16

    def unit(self, stored: np.ndarray) -> np.ndarray:
        """The ``y`` in [0, 1] of the module docstring, float64."""
        v = stored.astype(np.float64) * self.slope + self.intercept
        if self.window is not None:
            c, w = self.window
            if self.voi_function == "SIGMOID":
                y = 1.0 / (1.0 + np.exp(-4.0 * (v - c) / w))
            elif self.voi_function == "LINEAR_EXACT":
                y = np.clip((v - c) / w + 0.5, 0.0, 1.0)
            elif w > 1:
                y = np.clip((v - (c - 0.5)) / (w - 1) + 0.5, 0.0, 1.0)
            else:  # LINEAR with width 1: a step at c - 0.5
                y = (v > c - 0.5).astype(np.float64)
        else:
            lo, hi = float(v.min()), float(v.max())
            y = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
        return 1.0 - y if self.invert else y

    def apply(self, stored: np.ndarray) -> np.ndarray:
        dtype, top = (np.uint8, 255) if self.bits == 8 else (np.uint16, 65535)
        return np.floor(self.unit(stored) * top + 0.5).astype(dtype)


def _first(value: Any) -> float | None:
    """A DICOM number that may be multi-valued: its first value (``None`` when absent or empty)."""
    if value is None or value == "":
        return None
    if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
        return float(value[0]) if len(value) else None
    return float(value)


def grey_mapping(ds: Any, name: str) -> GreyMapping:
    """The ``GreyMapping`` a dataset's tags describe."""
    slope = _first(ds.get("RescaleSlope"))
    intercept = _first(ds.get("RescaleIntercept"))
    centre, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
    if function not in VOI_FUNCTIONS:
        raise EdgesslError(f"{name}: VOI LUT function {function!r} is not supported (use one of {VOI_FUNCTIONS})")
    window = None
    if centre is not None and width is not None:
        if width <= 0 or (width < 1 and function == "LINEAR"):
            raise EdgesslError(f"{name}: invalid WindowWidth {width} (must be >= 1)")
        window = (centre, width)
    return GreyMapping(
        slope=1.0 if slope is None else slope,
        intercept=0.0 if intercept is None else intercept,
        window=window,
        voi_function=function,
        invert=str(ds.get("PhotometricInterpretation", "")) == "MONOCHROME1",
        bits=8 if int(ds.get("BitsStored", 8)) <= 8 else 16,
    )


class DicomFile:
    """A parsed DICOM file: ``info`` from the header; ``frames()`` decodes the pixels."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        pydicom = _pydicom()
        from pydicom.errors import InvalidDicomError

        try:
            self.dataset = pydicom.dcmread(self.path)
        except InvalidDicomError:
            raise EdgesslError(f"{self.path}: not a DICOM file (no DICM preamble)") from None
        except OSError as exc:
            raise EdgesslError(f"{self.path}: cannot read ({exc.strerror or exc})") from None
        except Exception as exc:  # pydicom raises assorted errors on truncated/garbled files
            raise EdgesslError(f"{self.path}: unreadable DICOM ({type(exc).__name__}: {exc})") from None
        ds = self.dataset
        meta = getattr(ds, "file_meta", None)
        ts = meta.get("TransferSyntaxUID") if meta is not None else None
        self.info = DicomInfo(
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

    def _stored(self) -> np.ndarray:
        """All frames' stored values, ``F x H x W`` (grey) or ``F x H x W x 3`` (RGB)."""
        try:
            arr = self.dataset.pixel_array
        except Exception as exc:  # decoders raise many types for corrupt pixel data
            raise EdgesslError(f"{self.path}: cannot decode pixel data ({type(exc).__name__}: {exc})") from None
        grey = self.info.photometric in GREY
        if self.info.frames == 1 or arr.ndim == (2 if grey else 3):
            arr = arr[None]
        return arr

    def frames(self) -> Iterator[np.ndarray]:
        """Each frame as grey (uint8/uint16, per the module docstring) or RGB uint8."""
        self.check_decodable()
        arr = self._stored()
        if self.info.photometric in COLOUR:
            for frame in arr:
                yield np.ascontiguousarray(frame.astype(np.uint8))
            return
        mapping = grey_mapping(self.dataset, str(self.path))
        for frame in arr:
            yield mapping.apply(frame)


def read_dicom(path: str | Path) -> tuple[DicomInfo, list[np.ndarray]]:
    """Header info and every frame of a DICOM file, decoded (see the module docstring)."""
    f = DicomFile(path)
    return f.info, list(f.frames())
