"""The one preprocessing: image (grey/RGB, uint8/uint16, any size) to the model's input tensor.

Training, evaluation, calibration, the runtime and the ROS node all call ``preprocess``; the
bundle's manifest stores the ``PreprocessSpec``, so the device reproduces it exactly.

    x = (resize(to_channels(to_uint8(img))) / 255 - mean) / std,   laid out as C x H x W, float32
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable

import cv2
import numpy as np

from .errors import EdgesslError
from .images import to_uint8
from .records import record_from_dict

RESIZE_POLICIES = ("stretch", "shorter_center_crop")


@dataclass(frozen=True)
class PreprocessSpec:
    """How raw pixels become the model input. Serialised into every checkpoint and manifest.

    ``resize``: ``stretch`` scales both sides to ``image_size`` (aspect ratio not kept);
    ``shorter_center_crop`` scales the shorter side to ``image_size`` and crops the centre.
    Interpolation is OpenCV's area filter when shrinking and bilinear when enlarging.
    """

    image_size: int
    channels: int = 3
    mean: tuple[float, ...] = field(default=(0.5, 0.5, 0.5))
    std: tuple[float, ...] = field(default=(0.25, 0.25, 0.25))
    resize: str = "stretch"
    color_order: str = "RGB"
    layout: str = "NCHW"
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise EdgesslError(f"channels must be 1 or 3, got {self.channels}")
        if self.image_size < 8:
            raise EdgesslError(f"image size {self.image_size} is too small (at least 8 px)")
        if self.resize not in RESIZE_POLICIES:
            raise EdgesslError(f"resize policy must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise EdgesslError("mean and std need one value per channel")
        if min(self.std) <= 0:
            raise EdgesslError("std values must be positive")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessSpec":
        return record_from_dict(cls, d, "preprocess spec")


def _to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)


def resize_geometry(h: int, w: int, size: int, policy: str) -> tuple[int, int, int, int]:
    """Where an ``h x w`` image goes under the resize ``policy``: resized to ``th x tw``, then the
    ``size`` square at ``(top, left)`` is kept. ``stretch``: ``th = tw = size``;
    ``shorter_center_crop``: the shorter side becomes ``size`` and the centre is cropped."""
    if policy != "shorter_center_crop":
        return size, size, 0, 0
    scale = size / min(h, w)
    th, tw = max(size, round(h * scale)), max(size, round(w * scale))
    return th, tw, (th - size) // 2, (tw - size) // 2


def _resize(img: np.ndarray, size: int, policy: str) -> np.ndarray:
    h, w = img.shape[:2]
    th, tw, top, left = resize_geometry(h, w, size, policy)
    if (th, tw) != (h, w):
        interp = cv2.INTER_AREA if th * tw < h * w else cv2.INTER_LINEAR
        img = cv2.resize(img, (tw, th), interpolation=interp)
    if (th, tw) != (size, size):
        img = img[top : top + size, left : left + size]
    return img


def resize_image(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """The geometric part alone: uint8 ``HxW`` or ``HxWx3`` at the model's size and channels."""
    return _resize(_to_channels(to_uint8(img), spec.channels), spec.image_size, spec.resize)


def preprocess(img: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """One image to a ``C x H x W`` float32 tensor, per the spec.

    Computed as ``(x/255 - mean) * (1/std)`` in float32, in two passes over the pixels (the
    layout change happens on the uint8 image, the arithmetic in place).
    """
    x = resize_image(img, spec)
    chw = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    out = np.empty(chw.shape, np.float32)
    np.multiply(chw, np.float32(1.0 / 255.0), out=out)
    out -= np.asarray(spec.mean, np.float32)[:, None, None]
    out *= (1.0 / np.asarray(spec.std, np.float32))[:, None, None]
    return out


def preprocess_batch(images: Iterable[np.ndarray], spec: PreprocessSpec) -> np.ndarray:
    """Several images to one ``N x C x H x W`` float32 batch."""
    batch = [preprocess(img, spec) for img in images]
    if not batch:
        return np.zeros((0, spec.channels, spec.image_size, spec.image_size), np.float32)
    return np.stack(batch)
