"""Writes real DICOM Part 10 files with pydicom for the tests (stored values given as integers), and
re-encodes them in another transfer syntax: pydicom's encoders (RLE, JPEG-LS, JPEG 2000, deflated,
big endian) or dcmtk's (``dcmcjpeg``: JPEG baseline, extended and lossless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from requires import require

pydicom = require("pydicom", reason="pydicom (optional group 'medical') is not installed")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
MULTIFRAME_GREY_WORD = "1.2.840.10008.5.1.4.1.1.7.3"


def write_dicom(path: Path, stored: np.ndarray, *, bits_stored: int = 8, signed: bool = False,
                photometric: str = "MONOCHROME2", slope: float | None = None, intercept: float | None = None,
                window: tuple | None = None, voi_function: str | None = None, modality: str = "CR",
                study_uid: str | None = None, series_uid: str | None = None,
                transfer_syntax: str = ExplicitVRLittleEndian, pixel_data: bool = True,
                raw_pixel_bytes: bytes | None = None, modality_lut: tuple | None = None,
                voi_luts: list[tuple] | None = None, palette: tuple | None = None) -> Dataset:
    """``stored``: ``HxW`` or ``FxHxW`` (multi-frame) stored values, or ``HxWx3`` uint8 RGB.

    ``window`` is ``(centre, width)`` or ``([c1, c2], [w1, w2])`` for multi-valued windows.
    ``modality_lut`` (a Modality LUT Sequence) and each of ``voi_luts`` (the VOI LUT Sequence's items)
    are ``(first_mapped, bits_per_entry, entries)``. ``palette`` is ``(first_mapped, bits_per_entry, red,
    green, blue)``: the three Palette Color LUTs of a ``PALETTE COLOR`` image.
    """
    stored = np.asarray(stored)
    colour = photometric in ("RGB",)
    allocated = 8 if bits_stored <= 8 else 16
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = transfer_syntax
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE if stored.ndim == 2 or colour else MULTIFRAME_GREY_WORD
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.Modality = modality
    ds.PatientID = "ANON"
    h, w = stored.shape[-3:-1] if colour else stored.shape[-2:]
    ds.Rows, ds.Columns = int(h), int(w)
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if stored.ndim == 3 and not colour:
        ds.NumberOfFrames = stored.shape[0]
    if slope is not None:
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept or 0.0
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if modality_lut is not None:
        item = lut_item(*modality_lut)
        item.ModalityLUTType = "US"  # unspecified units
        ds.ModalityLUTSequence = [item]
    if voi_luts is not None:
        ds.VOILUTSequence = [lut_item(*lut) for lut in voi_luts]
    if palette is not None:
        first, bits, *channels = palette
        for colour, entries in zip(("Red", "Green", "Blue"), channels):
            ds[f"{colour}PaletteColorLookupTableDescriptor"] = pydicom.DataElement(
                f"{colour}PaletteColorLookupTableDescriptor", "US", [len(entries), first, bits])
            ds[f"{colour}PaletteColorLookupTableData"] = pydicom.DataElement(
                f"{colour}PaletteColorLookupTableData", "OW", np.asarray(entries, "<u2").tobytes())
    if pixel_data:
        if raw_pixel_bytes is not None:
            ds.PixelData = raw_pixel_bytes
        else:
            masked = stored.astype(np.int64) & ((1 << bits_stored) - 1)  # two's complement in bits_stored bits
            ds.PixelData = masked.astype("<u1" if allocated == 8 else "<u2").tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return ds


def lut_item(first_mapped: int, bits: int, entries) -> Dataset:
    """A LUT item (PS3.3 C.11.1/C.11.2): LUT Descriptor (entries, first value mapped, bits per entry)
    and LUT Data; the descriptor is SS when the first mapped value is negative, as for signed pixels."""
    item = Dataset()
    item.add_new(0x00283002, "SS" if first_mapped < 0 else "US", [len(entries), first_mapped, bits])
    item.add_new(0x00283006, "US", [int(e) for e in entries])
    return item


def recode(source: Path, out: Path, transfer_syntax: str, **encoder_options) -> Dataset:
    """``source`` re-encoded by pydicom in ``transfer_syntax``: a compressed one (its encoder plugin;
    ``encoder_options`` such as ``jls_error`` or ``j2k_psnr``), deflated, or explicit VR big endian."""
    from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian

    ds = pydicom.dcmread(source)
    out.parent.mkdir(parents=True, exist_ok=True)
    if transfer_syntax == ExplicitVRBigEndian:
        stored = ds.pixel_array
        ds.PixelData = stored.astype(stored.dtype.newbyteorder(">")).tobytes()
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        pydicom.dcmwrite(out, ds, implicit_vr=False, little_endian=False)
        return ds
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    else:
        ds.compress(transfer_syntax, **encoder_options)
    ds.save_as(out, enforce_file_format=True)
    return ds


def dcmtk_jpeg(source: Path, out: Path, mode: str) -> None:
    """``source`` encoded by dcmtk's ``dcmcjpeg`` (``mode``: ``+eb`` baseline, ``+ee`` extended,
    ``+e1`` lossless first-order prediction)."""
    import subprocess

    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dcmcjpeg", mode, str(source), str(out)], check=True, capture_output=True, timeout=60)
