"""ROS image messages to the edgessl image convention, by hand (no cv_bridge, no ROS import).

``sensor_msgs/Image``: ``height`` rows of ``step`` bytes each; a row holds ``width`` pixels of the
encoding's size, then optional padding. ``is_bigendian`` matters only for 16-bit encodings.
``sensor_msgs/CompressedImage``: ``format`` is ``jpeg``/``png`` or image_transport's
``"<encoding>; jpeg compressed <encoding>"``; ``data`` holds the encoded file.

The decoders take the message's fields (not the message), so rclpy messages, rosbags messages
and plain bytes all work; they return ``HxW`` or ``HxWx3`` RGB, ``uint8``/``uint16`` (see
``edge_runtime.images``) and raise ``EdgesslError`` naming what is wrong with a malformed message,
or with an image over the pixel limit (checked from the header, before decoding: a 335-byte JPEG
can declare 30000 x 30000 pixels).
``raw_from_image`` is the inverse, for publishers (cameras, heatmaps as ``32FC1``, features).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import EdgesslError
from ..images import CAMERA_PIXELS, canonical_image, check_pixels, decode_image


@dataclass(frozen=True)
class RawEncoding:
    channels: int
    bytes_per_channel: int
    bgr: bool


RAW_ENCODINGS = {
    "rgb8": RawEncoding(3, 1, False),
    "bgr8": RawEncoding(3, 1, True),
    "rgba8": RawEncoding(4, 1, False),
    "bgra8": RawEncoding(4, 1, True),
    "mono8": RawEncoding(1, 1, False),
    "mono16": RawEncoding(1, 2, False),
}
FLOAT_ENCODING = "32FC1"
COMPRESSED_FORMATS = {"jpeg": b"\xff\xd8\xff", "png": b"\x89PNG\r\n\x1a\n"}


def _as_uint8_buffer(data) -> np.ndarray:
    """Message payload (bytes, array.array('B'), memoryview, numpy uint8) as a flat uint8 array, no copy."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise EdgesslError(f"image data must be uint8 bytes, got an array of {data.dtype}")
        return data.reshape(-1)
    return np.frombuffer(data, dtype=np.uint8)


def image_from_message(msg, compressed: bool, max_pixels: int = CAMERA_PIXELS) -> np.ndarray:
    """The pixels of an ``Image`` (or, ``compressed``, a ``CompressedImage``) message of rclpy or rosbags."""
    if compressed:
        return image_from_compressed(msg.format, msg.data, max_pixels)
    return image_from_raw(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, max_pixels)


def image_from_raw(encoding: str, height: int, width: int, step: int, is_bigendian: bool | int,
                   data, max_pixels: int = CAMERA_PIXELS) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image``: ``data`` must be exactly ``step * height`` bytes with
    ``step >= width * bytes_per_pixel``; padding at the end of each row is dropped."""
    enc = RAW_ENCODINGS.get(encoding)
    if enc is None:
        raise EdgesslError(f"unsupported image encoding {encoding!r}; publish one of {', '.join(RAW_ENCODINGS)}")
    if height < 1 or width < 1:
        raise EdgesslError(f"empty {encoding} image ({width}x{height})")
    check_pixels(width, height, max_pixels, f"{encoding} image")
    row_bytes = width * enc.channels * enc.bytes_per_channel
    if step < row_bytes:
        raise EdgesslError(f"{encoding} image step {step} is smaller than width*bytes_per_pixel = {row_bytes}")
    buf = _as_uint8_buffer(data)
    if buf.size != step * height:
        what = "truncated" if buf.size < step * height else "too long"
        raise EdgesslError(f"{encoding} image data {what}: {buf.size} bytes, expected step*height = "
                           f"{step}*{height} = {step * height}")
    rows = buf.reshape(height, step)[:, :row_bytes]
    if enc.bytes_per_channel == 2:
        dtype = np.dtype(">u2" if is_bigendian else "<u2")
        pixels = np.ascontiguousarray(rows).view(dtype).astype(np.uint16)
    else:
        pixels = rows
    pixels = pixels.reshape(height, width, enc.channels) if enc.channels > 1 else pixels
    return np.ascontiguousarray(canonical_image(pixels, bgr=enc.bgr, name=f"{encoding} image"))


@dataclass(frozen=True)
class RawImage:
    """The fields of a ``sensor_msgs/Image`` other than the header."""

    encoding: str
    height: int
    width: int
    step: int
    is_bigendian: int
    data: bytes


def raw_from_image(img: np.ndarray, encoding: str, row_padding: int = 0, bigendian: bool = False) -> RawImage:
    """Lay out an edgessl image (grey or RGB; float32 ``HxW`` for ``32FC1``) as ``encoding`` with
    ``row_padding`` extra bytes per row (zeros) and the given byte order for multi-byte pixels."""
    if encoding == FLOAT_ENCODING:
        enc, pixels = RawEncoding(1, 4, False), np.asarray(img, np.float32)
    elif encoding in RAW_ENCODINGS:
        enc = RAW_ENCODINGS[encoding]
        pixels = _pixels_for(np.asarray(img), encoding, enc)
    else:
        raise EdgesslError(f"cannot encode {encoding!r}; use one of {', '.join([*RAW_ENCODINGS, FLOAT_ENCODING])}")
    if pixels.ndim != (2 if enc.channels == 1 else 3):
        raise EdgesslError(f"{encoding} needs {'a grey' if enc.channels == 1 else 'an RGB'} image, got shape {img.shape}")
    height, width = pixels.shape[:2]
    order = ">" if bigendian else "<"
    pixels = pixels.astype(pixels.dtype.newbyteorder(order) if pixels.dtype.itemsize > 1 else pixels.dtype)
    rows = pixels.reshape(height, -1).view(np.uint8)
    if row_padding:
        rows = np.concatenate([rows, np.zeros((height, row_padding), np.uint8)], axis=1)
    return RawImage(encoding, height, width, rows.shape[1], int(bigendian), np.ascontiguousarray(rows).tobytes())


def _pixels_for(img: np.ndarray, encoding: str, enc: RawEncoding) -> np.ndarray:
    dtype = np.uint16 if enc.bytes_per_channel == 2 else np.uint8
    if img.dtype != dtype:
        raise EdgesslError(f"{encoding} needs {np.dtype(dtype).name} pixels, got {img.dtype}")
    if enc.channels == 1 or img.ndim != 3:
        return img
    out = img[:, :, ::-1] if enc.bgr else img
    if enc.channels == 4:
        out = np.concatenate([out, np.full(img.shape[:2] + (1,), 255, np.uint8)], axis=2)
    return np.ascontiguousarray(out)


def compressed_kind(fmt: str) -> str:
    """``jpeg`` or ``png`` from a ``CompressedImage.format`` string (plain or image_transport style)."""
    text = fmt.lower()
    if "compresseddepth" in text:
        raise EdgesslError(f"compressed image format {fmt!r} (compressedDepth) is not supported; "
                           "publish jpeg or png")
    if "png" in text:
        return "png"
    if "jpeg" in text or "jpg" in text:
        return "jpeg"
    raise EdgesslError(f"unsupported compressed image format {fmt!r}; publish jpeg or png")


def image_from_compressed(fmt: str, data, max_pixels: int = CAMERA_PIXELS) -> np.ndarray:
    """Pixels of a ``sensor_msgs/CompressedImage`` whose bytes must be the format it claims, within
    ``max_pixels``."""
    kind = compressed_kind(fmt)
    raw = _as_uint8_buffer(data).tobytes()
    if not raw:
        raise EdgesslError(f"empty {kind} compressed image (0 bytes)")
    if not raw.startswith(COMPRESSED_FORMATS[kind]):
        raise EdgesslError(f"compressed image says {fmt!r} but its bytes are not a {kind} file")
    return decode_image(raw, f"{kind} compressed image", max_pixels)
