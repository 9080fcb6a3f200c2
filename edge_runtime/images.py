"""Decoding image files into numpy arrays, and normalising their pixel layout.

Convention used everywhere in edgessl: an image is ``HxW`` (grey) or ``HxWx3`` (RGB order),
``uint8`` or ``uint16``. OpenCV decodes to BGR; we convert once, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .errors import EdgesslError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def files_in(folder: Path, keep: Callable[[Path], bool] = is_image_file, recursive: bool = True) -> list[Path]:
    """The files in ``folder`` (and below it when ``recursive``) that ``keep`` accepts, sorted; hidden
    files (``.name``, e.g. macOS ``._*`` forks) are passed over."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and not p.name.startswith(".") and keep(p))


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ...) to the edgessl convention (grey or RGB)."""
    if not data:
        raise EdgesslError(f"{name}: empty file (0 bytes)")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # a header OpenCV refuses (e.g. a width over its limit), found by fuzzing
        reason = " ".join(str(exc).split()).split("error: ", 1)[-1]
        raise EdgesslError(f"{name}: not a readable image (OpenCV: {reason})") from None
    if img is None:
        raise EdgesslError(f"{name}: not a readable image (corrupt or unsupported format)")
    return canonical_image(img, bgr=True, name=name)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file from disk (grey or RGB, uint8 or uint16)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EdgesslError(f"{path}: cannot read ({exc.strerror})") from None
    return decode_image(data, str(path))


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
