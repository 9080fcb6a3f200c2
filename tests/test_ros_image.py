"""ROS image messages to pixels (edge_runtime.ros_image): every encoding, padded rows, both byte
orders, jpeg/png, malformed messages, and the same score as the runtime on the same pixels."""

from __future__ import annotations

import os
import threading

import cv2
import numpy as np
import pytest

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.ros.image import (RAW_ENCODINGS, compressed_kind, image_from_compressed, image_from_raw,
                                            raw_from_image)
from ros_support import sample_image

pytestmark = pytest.mark.ros

RGB = sample_image(3)
GREY = sample_image(1)
GREY16 = GREY.astype(np.uint16) * 257 + np.arange(GREY.size, dtype=np.uint16).reshape(GREY.shape)
# (encoding, the pixels the message carries, what decoding must give back: the runtime's convention)
CASES = {"rgb8": (RGB, RGB), "bgr8": (RGB, RGB), "rgba8": (RGB, RGB), "bgra8": (RGB, RGB),
         "mono8": (GREY, GREY), "mono16": (GREY16, GREY16)}


def decode(raw):
    return image_from_raw(raw.encoding, raw.height, raw.width, raw.step, raw.is_bigendian, raw.data)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 3, 8])
@pytest.mark.parametrize("encoding", list(CASES))
def test_every_encoding_round_trips_with_padding_and_byte_order(encoding, padding, bigendian):
    pixels, expected = CASES[encoding]
    raw = raw_from_image(pixels, encoding, padding, bigendian)
    assert raw.step == pixels.shape[1] * RAW_ENCODINGS[encoding].channels * RAW_ENCODINGS[encoding].bytes_per_channel + padding
    out = decode(raw)
    assert out.dtype == expected.dtype and out.flags.c_contiguous
    np.testing.assert_array_equal(out, expected)


def test_byte_layouts_by_hand():
    """Not only round trips: the bytes a camera driver writes decode to the right RGB / grey values."""
    bgr = bytes([10, 20, 30, 40, 50, 60, 0, 0])  # 2 pixels BGR + 2 padding bytes
    np.testing.assert_array_equal(image_from_raw("bgr8", 1, 2, 8, 0, bgr), [[[30, 20, 10], [60, 50, 40]]])
    bgra = bytes([1, 2, 3, 255])
    np.testing.assert_array_equal(image_from_raw("bgra8", 1, 1, 4, 0, bgra), [[[3, 2, 1]]])
    assert image_from_raw("mono16", 1, 1, 2, 1, bytes([0x01, 0x02]))[0, 0] == 0x0102
    assert image_from_raw("mono16", 1, 1, 2, 0, bytes([0x01, 0x02]))[0, 0] == 0x0201


def test_accepts_rclpy_and_numpy_payloads():
    raw = raw_from_image(RGB, "rgb8", 2)
    import array

    for data in (raw.data, array.array("B", raw.data), np.frombuffer(raw.data, np.uint8), memoryview(raw.data)):
        np.testing.assert_array_equal(image_from_raw("rgb8", raw.height, raw.width, raw.step, 0, data), RGB)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "rgb8; jpeg compressed bgr8", "mono8; png compressed"])
def test_compressed_jpeg_and_png(fmt):
    kind = compressed_kind(fmt)
    ok, enc = cv2.imencode(".png" if kind == "png" else ".jpg", RGB[:, :, ::-1].copy())
    assert ok
    out = image_from_compressed(fmt, enc.tobytes())
    expected = cv2.imdecode(enc, cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    np.testing.assert_array_equal(out, expected)
    if kind == "png":
        np.testing.assert_array_equal(out, RGB)


@pytest.mark.parametrize("fields, message", [
    (("yuv422", 2, 2, 4, 0, bytes(8)), "unsupported image encoding 'yuv422'"),
    (("rgb8", 2, 4, 11, 0, bytes(22)), "step 11 is smaller than width\\*bytes_per_pixel = 12"),
    (("rgb8", 2, 4, 12, 0, bytes(20)), "truncated: 20 bytes, expected step\\*height = 12\\*2 = 24"),
    (("mono8", 2, 4, 4, 0, bytes(9)), "too long: 9 bytes"),
    (("mono16", 0, 4, 8, 0, b""), "empty mono16 image"),
])
def test_malformed_raw_messages_say_what_is_wrong(fields, message):
    with pytest.raises(EdgesslError, match=message):
        image_from_raw(*fields)


@pytest.mark.parametrize("fmt, data, message", [
    ("jpeg", b"\x89PNG\r\n\x1a\n" + bytes(20), "not a jpeg file"),
    ("png", b"", "empty png"),
    ("tiff", b"II*\x00", "unsupported compressed image format 'tiff'"),
    ("16UC1; compressedDepth png", b"\x89PNG", "compressedDepth"),
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(20), "not a readable image"),
])
def test_malformed_compressed_messages_say_what_is_wrong(fmt, data, message):
    with pytest.raises(EdgesslError, match=message):
        image_from_compressed(fmt, data)


@pytest.fixture(scope="module")
def pipe(tiny_bundle):
    from edgessl.edge_runtime.pipeline import Pipeline

    return Pipeline.load(tiny_bundle)


@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize("encoding", list(CASES))
def test_every_encoding_scores_like_the_runtime(pipe, encoding, padding):
    pixels, expected = CASES[encoding]
    want = pipe.score(expected)
    got = pipe.score(decode(raw_from_image(pixels, encoding, padding, bigendian=encoding == "mono16")))
    assert got.score == want.score and got.raw_score == want.raw_score and got.is_anomaly == want.is_anomaly


def test_png_compressed_scores_like_the_runtime(pipe):
    ok, enc = cv2.imencode(".png", RGB[:, :, ::-1].copy())
    assert pipe.score(image_from_compressed("png", enc.tobytes())).score == pipe.score(RGB).score


def corrupt_jpegs() -> dict[str, bytes]:
    """A good JPEG of a real picture, cut in half, and with one entropy-coded byte flipped to 0xFF
    (a bit flip libjpeg notices: a marker where none may be)."""
    data = cv2.imencode(".jpg", sample_image(3, 64, 64))[1].tobytes()
    sos = data.index(b"\xff\xda")
    scan = sos + 2 + int.from_bytes(data[sos + 2:sos + 4], "big")
    flip = next(p for p in range((scan + len(data)) // 2, len(data) - 2)
                if data[p] != 0xFF and data[p + 1] not in (0x00, 0xFF) and not 0xD0 <= data[p + 1] <= 0xD7)
    return {"truncated": data[:len(data) // 2], "bit-flipped": data[:flip] + b"\xff" + data[flip + 1:]}


@pytest.mark.parametrize("kind", ["truncated", "bit-flipped"])
def test_a_corrupt_jpeg_is_an_error_not_an_image(kind, capfd):
    with pytest.raises(EdgesslError, match="corrupt|not a readable image"):
        image_from_compressed("jpeg", corrupt_jpegs()[kind])
    assert "Corrupt JPEG data" not in capfd.readouterr().err  # libjpeg's warning became the error


def test_other_output_on_stderr_during_a_jpeg_decode_is_passed_on(capfd, monkeypatch):
    """Standard error is a temporary file while a JPEG decodes: what another thread logs meanwhile
    still reaches it."""
    data = cv2.imencode(".jpg", sample_image(3, 64, 64))[1].tobytes()
    real_imdecode = cv2.imdecode

    def imdecode_while_another_thread_logs(buf, flags):
        thread = threading.Thread(target=lambda: os.write(2, b"a log line of another thread\n"))
        thread.start()
        thread.join()
        return real_imdecode(buf, flags)

    monkeypatch.setattr(cv2, "imdecode", imdecode_while_another_thread_logs)
    assert image_from_compressed("jpeg", data).shape == (64, 64, 3)
    assert "a log line of another thread" in capfd.readouterr().err
