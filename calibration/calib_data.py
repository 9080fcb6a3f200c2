"""The images calibration and the gate read, all through the runtime's own ``preprocess``.

* calibration: normal images of the ``train`` split (every image when the data is unlabelled),
  ``num_images`` of them evenly spaced; at least ``MIN_CALIBRATION_IMAGES``;
* threshold hold-out: the normal images the fp32 threshold came from, with their recorded (cross-fitted)
  fp32 scores (``detector/fit.json`` lists them per split when the data is the one the detector was
  fitted on), else the ``val`` normals;
* gate: those hold-out normals plus (up to ``max_test``) ``test`` images with their labels
  (1 = anomaly) when the data is labelled.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from edgessl.edge_runtime.data.datasets import class_indices, open_dataset, resolve_label
from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec, preprocess_batch

MIN_CALIBRATION_IMAGES = 32
RECOMMENDED_CALIBRATION_IMAGES = 256


@dataclass
class HeldOut:
    normals: np.ndarray  # preprocessed held-out normals (threshold re-derivation)
    recorded_scores: np.ndarray | None  # their fp32 held-out scores from fit.json, None for plain val normals
    test: np.ndarray  # preprocessed test images
    test_labels: np.ndarray | None  # 1 = anomaly, None when unlabelled
    source: str  # how the normals were chosen


def _spaced(idx: np.ndarray, n: int) -> np.ndarray:
    if n >= len(idx):
        return idx
    return idx[np.unique(np.linspace(0, len(idx) - 1, n).round().astype(int))]


def _batch(ds: ImageDataset, idx: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    return preprocess_batch((ds.image(int(i)) for i in idx), spec)


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
    return _batch(ds, _spaced(idx, num_images), spec)


def held_out(source: str, spec: PreprocessSpec, normal_label: str | None, fit: dict, max_test: int) -> HeldOut:
    """Hold-out normals for the threshold and labelled test images for the gate."""
    parts = fit.get("holdout", {}).get("parts", []) if fit.get("data") == source else []
    if parts:
        normals = np.concatenate([_batch(open_dataset(source, p["split"]), np.asarray(p["indices"], np.int64), spec)
                                  for p in parts])
        recorded = np.concatenate([np.asarray(p["raw_scores"], np.float64) for p in parts])
        how = "the fp32 threshold's cross-fitted normals (fit.json)"
    else:
        val = open_dataset(source, "val")
        normals, recorded, how = _batch(val, class_indices(val, normal_label), spec), None, "val normals"
    test = open_dataset(source, "test")
    tidx = _spaced(np.arange(len(test)), max_test)
    labels = None
    if normal_label is not None and test.labelled:
        labels = (test.labels[tidx] != resolve_label(test, normal_label)).astype(np.int64)
    return HeldOut(normals, recorded, _batch(test, tidx, spec), labels, how)
