"""Anomaly maps at the model input's resolution: upsampling, ground-truth masks, overlays.

A detector's map is at feature resolution (e.g. 16x16 for a 32 px input). ``upsample_map`` resizes
it bilinearly (OpenCV, half-pixel centres) to the model input; ``mask_at_input`` brings a
ground-truth mask through the same geometry as the image (``preprocess.resize_image``), so map
and mask line up pixel for pixel.
"""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from .errors import EdgesslError
from .preprocess import PreprocessSpec, resize_image


def upsample_map(amap: np.ndarray, size: int) -> np.ndarray:
    """One ``h x w`` map to ``size x size`` float32 (bilinear)."""
    amap = np.asarray(amap, np.float32)
    if amap.shape == (size, size):
        return amap
    return cv2.resize(amap, (size, size), interpolation=cv2.INTER_LINEAR)


def mask_at_input(mask: np.ndarray, image_shape: tuple[int, ...], spec: PreprocessSpec, name: str = "mask") -> np.ndarray:
    """A ground-truth mask (>0 = anomalous) of an image of ``image_shape``, resized and cropped like the
    image itself: a ``bool`` array ``image_size x image_size``."""
    if tuple(mask.shape[:2]) != tuple(image_shape[:2]):
        raise EdgesslError(f"{name}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
                           f"{image_shape[1]}x{image_shape[0]}; masks must have their image's size")
    grey = replace(spec, channels=1, mean=(0.0,), std=(1.0,))
    binary = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
    return resize_image(binary, grey) >= 128


def overlay(image: np.ndarray, normalised_map: np.ndarray, alpha: float = 0.5, vmax: float = 2.0) -> np.ndarray:
    """An RGB uint8 picture: ``image`` (at the map's size) under a JET heatmap of a normalised map.

    Colour scale: 0 (median normal) blue, ``vmax`` and above red (with the default 2, the threshold
    1 is green-yellow).
    """
    h, w = normalised_map.shape
    img = image if image.ndim == 3 else cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    level = np.clip(np.asarray(normalised_map, np.float32) / max(vmax, 1e-12), 0.0, 1.0)
    heat = cv2.applyColorMap((level * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    return cv2.addWeighted(img.astype(np.uint8), 1 - alpha, heat, alpha, 0.0)
