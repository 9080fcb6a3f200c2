"""Decoding image files into numpy arrays, and normalising their pixel layout.

Convention used everywhere in edgessl: an image is ``HxW`` (grey) or ``HxWx3`` (RGB order),
``uint8`` or ``uint16``. OpenCV decodes to BGR; we convert once, here.

**Limits before decoding.** An image's size is read from its header (``image_headers``) and
checked against a pixel limit before a single pixel is decoded, as Pillow's ``MAX_IMAGE_PIXELS``
does: a few hundred bytes can declare gigabytes of pixels. The limit (``pixel_limit``) is the larger
of ``CAMERA_PIXELS`` (the largest sensors of real cameras, with room to spare: 50 megapixels) and
``INPUT_MULTIPLE`` times the model input's area; ``--max-pixels`` (the ROS node's ``max_pixels``)
sets another. DICOM (``medical.dicom``) and video (``video``) headers are checked the same way.

**Corrupt JPEGs are errors.** libjpeg decodes a truncated or bit-flipped JPEG with a warning
("Corrupt JPEG data: ...", "Premature end of JPEG file") printed to standard error, and OpenCV
returns the damaged pixels as if nothing happened. ``decode_image`` reads those warnings (standard
error is briefly a temporary file while a JPEG decodes; anything else written there meanwhile is
passed on) and refuses the image, so a corrupt frame is counted as a failure, not scored.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import EdgesslError
from .files import read_regular
from .image_headers import image_size

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")
LIBJPEG_WARNINGS = ("Corrupt JPEG data", "Premature end of JPEG file", "Invalid SOS parameters",
                    "Inconsistent progression sequence")  # libjpeg's JWRN_* messages that mean damaged data
_STDERR = threading.Lock()  # one decode at a time watches standard error
CAMERA_PIXELS = 50_000_000  # above 8K video (33 MP), industrial (45-50 MP) and medical detectors (about 18 MP)
INPUT_MULTIPLE = 256  # a bundle with a large input (1024 px: 268 MP) may take images that large


def pixel_limit(input_size: int | None = None, given: int = 0) -> int:
    """The most pixels an image may have to be decoded: ``given`` when positive, else the larger of
    ``CAMERA_PIXELS`` and ``INPUT_MULTIPLE`` times the model input's area (``input_size`` square)."""
    if given > 0:
        return int(given)
    return max(CAMERA_PIXELS, INPUT_MULTIPLE * int(input_size or 0) ** 2)


def check_pixels(width: int, height: int, max_pixels: int, name: str, frames: int = 1) -> None:
    """Refuse, before decoding, an image (``frames`` of them decoded at once) over ``max_pixels``."""
    pixels = int(width) * int(height) * max(int(frames), 1)
    if pixels > max_pixels:
        what = f"{width}x{height}" + (f" x {frames} frames" if frames > 1 else "")
        raise EdgesslError(f"{name}: {what} = {_amount(pixels)}, over the limit of {_amount(max_pixels)} "
                           "(--max-pixels); not decoded")


def _amount(pixels: int) -> str:
    return f"{pixels / 1e6:,.0f} megapixels" if pixels >= 1_000_000 else f"{pixels:,d} pixels"


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def files_in(folder: Path, keep: Callable[[Path], bool] = is_image_file, recursive: bool = True) -> list[Path]:
    """The files in ``folder`` (and below it when ``recursive``) that ``keep`` accepts, sorted; hidden
    files (``.name``, e.g. macOS ``._*`` forks) are passed over."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not p.name.startswith(".") and keep(p))


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = CAMERA_PIXELS) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, BMP, TIFF, WebP, GIF, PNM) to the edgessl convention
    (grey or RGB), once the header's size is within ``max_pixels``."""
    if not data:
        raise EdgesslError(f"{name}: empty file (0 bytes)")
    size = image_size(data)
    if size is None:
        raise EdgesslError(f"{name}: not a readable image (not a PNG, JPEG, BMP, TIFF, WebP, GIF or PNM header)")
    check_pixels(*size, max_pixels, name)
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img, warnings = _imdecode_watching_libjpeg(buf) if data.startswith(b"\xff\xd8") else \
            (cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), [])
    except cv2.error as exc:  # a header OpenCV refuses (e.g. a width over its limit), found by fuzzing
        reason = " ".join(str(exc).split()).split("error: ", 1)[-1]
        raise EdgesslError(f"{name}: not a readable image (OpenCV: {reason})") from None
    if warnings:
        raise EdgesslError(f"{name}: corrupt JPEG (libjpeg: {warnings[0]})")
    if img is None:
        raise EdgesslError(f"{name}: not a readable image (corrupt or unsupported format)")
    return canonical_image(img, bgr=True, name=name)


def _imdecode_watching_libjpeg(buf: np.ndarray) -> tuple[np.ndarray | None, list[str]]:
    """``cv2.imdecode`` of a JPEG, and the warnings libjpeg printed meanwhile (module docstring)."""
    with _STDERR, tempfile.TemporaryFile() as caught:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(caught.fileno(), 2)
        try:
            img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        caught.seek(0)
        lines = caught.read().decode(errors="replace").splitlines()
    others = [line for line in lines if not line.startswith(LIBJPEG_WARNINGS)]
    if others:  # another thread's output: passed on
        os.write(2, ("\n".join(others) + "\n").encode())
    return img, [line for line in lines if line.startswith(LIBJPEG_WARNINGS)]


def read_image(path: str | Path, max_pixels: int = CAMERA_PIXELS) -> np.ndarray:
    """Read an image file from disk (grey or RGB, uint8 or uint16), refusing one over ``max_pixels``."""
    return decode_image(read_regular(path, "image"), str(path), max_pixels)


def canonical_image(img: np.ndarray, bgr: bool = False, name: str = "<array>") -> np.ndarray:
    """Return ``img`` as ``HxW`` or ``HxWx3`` RGB, dropping alpha, keeping uint8/uint16.

    ``bgr`` says the colour channels arrive in OpenCV's BGR(A) order. Floating-point input is
    taken to be in [0, 1] and converted to uint8.
    """
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (3, 4)):
        raise EdgesslError(f"{name}: unsupported image shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise EdgesslError(f"{name}: empty image {img.shape}")
    if img.dtype.kind == "f":
        img = np.clip(np.nan_to_num(img) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    elif img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255
    elif img.dtype not in (np.uint8, np.uint16):
        raise EdgesslError(f"{name}: unsupported pixel type {img.dtype}")
    if img.ndim == 3:
        if img.shape[2] == 4:
            img = img[:, :, :3]
        if bgr:
            img = img[:, :, ::-1]
        img = np.ascontiguousarray(img)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Scale 16-bit pixels to 8 bits (``v / 257``, so 65535 -> 255); uint8 passes through."""
    if img.dtype == np.uint8:
        return img
    return ((img.astype(np.uint32) + 128) // 257).astype(np.uint8)
