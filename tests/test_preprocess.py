"""The one preprocessing: layout, channels, bit depth, resize policies, validation."""

import numpy as np
import pytest

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.images import canonical_image, decode_image
from edgessl.edge_runtime.preprocess import PreprocessSpec, preprocess, preprocess_batch


def spec(channels=3, size=16, resize="stretch"):
    return PreprocessSpec(size, channels, (0.5,) * channels, (0.25,) * channels, resize)


def test_normalisation_and_layout():
    img = np.full((20, 30, 3), 255, np.uint8)
    x = preprocess(img, spec())
    assert x.shape == (3, 16, 16) and x.dtype == np.float32
    np.testing.assert_allclose(x, (1.0 - 0.5) / 0.25)


def test_grey_to_rgb_and_rgb_to_grey():
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    rgb = preprocess(grey, spec(3))
    assert np.array_equal(rgb[0], rgb[1]) and np.array_equal(rgb[1], rgb[2])
    colour = np.zeros((16, 16, 3), np.uint8)
    colour[..., 0] = 255  # pure red: luminance 0.299 * 255
    g = preprocess(colour, spec(1))
    assert g.shape == (1, 16, 16)
    np.testing.assert_allclose(g[0, 0, 0], (76 / 255 - 0.5) / 0.25, atol=1e-6)


def test_sixteen_bit_scales_to_eight():
    img16 = np.full((16, 16), 65535, np.uint16)
    img8 = np.full((16, 16), 255, np.uint8)
    np.testing.assert_array_equal(preprocess(img16, spec(1)), preprocess(img8, spec(1)))


def test_center_crop_keeps_the_middle():
    img = np.zeros((16, 48), np.uint8)
    img[:, 16:32] = 255
    x = preprocess(img, spec(1, 16, "shorter_center_crop"))
    assert (x == (1 - 0.5) / 0.25).all()


def test_rgba_and_bgr_decoding():
    import cv2

    bgra = np.zeros((4, 4, 4), np.uint8)
    bgra[..., 2] = 200  # red in OpenCV's BGR order
    ok, png = cv2.imencode(".png", bgra)
    rgb = decode_image(png.tobytes())
    assert rgb.shape == (4, 4, 3) and (rgb[..., 0] == 200).all() and (rgb[..., 2] == 0).all()
    assert canonical_image(np.ones((3, 3), np.float32)).dtype == np.uint8


def test_bad_inputs_are_clear():
    with pytest.raises(EdgesslError, match="empty file"):
        decode_image(b"")
    with pytest.raises(EdgesslError, match="not a readable image"):
        decode_image(b"not an image at all")
    with pytest.raises(EdgesslError, match="channels"):
        PreprocessSpec(16, 2, (0.5, 0.5), (0.2, 0.2))
    with pytest.raises(EdgesslError, match="resize"):
        PreprocessSpec(16, 1, (0.5,), (0.2,), "squash")
    assert preprocess_batch([], spec()).shape == (0, 3, 16, 16)
