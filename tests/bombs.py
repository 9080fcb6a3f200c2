"""Decompression bombs for the tests (a few hundred bytes declaring gigapixels), and the peak RSS of an
``edgessl`` command run in its own process."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(path: Path, side: int = 30000) -> Path:
    """A real, decodable all-black grey PNG of ``side`` x ``side`` pixels (30000: 900 MB of pixels in
    under 1 MB of file)."""
    z = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte 0, then the row
    data = b"".join(z.compress(row) for _ in range(side)) + z.flush()
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", data) + _chunk(b"IEND", b""))
    return path


def jpeg_bomb(side: int = 30000, colour: bool = False) -> bytes:
    """A JPEG header (a few hundred bytes) declaring ``side`` x ``side`` pixels, its scan cut short: what
    a decoder allocates for before it finds the data missing."""
    import cv2
    import numpy as np

    small = np.zeros((8, 8, 3) if colour else (8, 8), np.uint8)
    data = bytearray(cv2.imencode(".jpg", small)[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def rle_dicom_bomb(path: Path, side: int = 65535) -> Path:
    """An RLE Lossless DICOM of under a kilobyte declaring ``side`` x ``side`` 8-bit pixels."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = RLELossless
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality, ds.PatientID = generate_uid(), generate_uid(), "CR", "X"
    ds.Rows = ds.Columns = side
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    segment = bytes([0x81, 0]) * 64  # runs of zeros, far fewer than the header declares
    ds.PixelData = encapsulate([struct.pack("<16I", 1, 64, *[0] * 14) + segment])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


CHILD = """
import sys
from pathlib import Path
from edgessl.cli import main
code = main(sys.argv[1:])
peak = next(int(l.split()[1]) for l in Path("/proc/self/status").read_text().splitlines() if l.startswith("VmHWM:"))
print(f"peak_rss_kb {peak}", file=sys.stderr)
sys.exit(code)
"""


def run_measured(argv: list[str], timeout: float = 300) -> tuple[int, str, str, float]:
    """``edgessl ARGV`` in a fresh process: exit status, stdout, stderr (without the last line) and its peak
    RSS in MB (``VmHWM``, which starts afresh at ``exec``)."""
    done = subprocess.run([sys.executable, "-c", CHILD, *argv], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    *err, last = done.stderr.strip().splitlines()
    return done.returncode, done.stdout, "\n".join(err), int(last.split()[1]) / 1024
