"""The images calibration and the gate read, all through the runtime's own ``preprocess``.

* calibration: normal images of the ``train`` split (every image when the data is unlabelled),
  ``num_images`` of them evenly spaced; at least ``MIN_CALIBRATION_IMAGES``;
* threshold hold-out and gate: ``edge_runtime.data.holdout`` (shared with ``build-engine``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from edgessl.edge_runtime.data.datasets import class_indices, open_dataset
from edgessl.edge_runtime.data.holdout import read_batch, spaced
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec

MIN_CALIBRATION_IMAGES = 32
RECOMMENDED_CALIBRATION_IMAGES = 256


def batch_digest(x: np.ndarray) -> str:
    """sha256 of a preprocessed batch's bytes (identifies the calibration set)."""
    return hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()


def check_batch(x: np.ndarray, input_shape: tuple[int, ...], what: str) -> None:
    """The batch's ``C x H x W`` equals the model input's, else a clear error."""
    if tuple(x.shape[1:]) != tuple(input_shape):
        raise EdgesslError(f"{what} images come out as {tuple(x.shape[1:])} (C x H x W) but the model takes "
                           f"{tuple(input_shape)}: the bundle's preprocess spec and model.onnx disagree; re-export it")


def calibration_images(source: str, spec: PreprocessSpec, normal_label: str | None, num_images: int) -> np.ndarray:
    """``num_images`` normal training images, preprocessed; refuses too few."""
    if num_images < MIN_CALIBRATION_IMAGES:
        raise EdgesslError(f"--num-images {num_images} is too few: calibration needs at least "
                           f"{MIN_CALIBRATION_IMAGES} images ({RECOMMENDED_CALIBRATION_IMAGES} or more recommended)")
    ds = open_dataset(source, "train")
    idx = class_indices(ds, normal_label)
    if len(idx) < MIN_CALIBRATION_IMAGES:
        raise EdgesslError(f"{source}: only {len(idx)} normal training images; calibration needs at least "
                           f"{MIN_CALIBRATION_IMAGES} ({RECOMMENDED_CALIBRATION_IMAGES} or more recommended)")
    return read_batch(ds, spaced(idx, num_images), spec)
