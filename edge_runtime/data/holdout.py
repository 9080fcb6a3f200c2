"""The held-out images a precision is judged and re-thresholded on, read through the runtime's own
``preprocess`` (``calibrate`` and ``build-engine`` read the same ones):

* normals: the images the fp32 threshold came from, with their recorded (cross-fitted) fp32 scores
  (``detector/fit.json`` lists them per split when the data is the one the detector was fitted on),
  else the ``val`` normals (no recorded scores);
* test: up to ``max_test`` ``test`` images, evenly spaced, with their labels (1 = anomaly) when the
  data is labelled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .datasets import class_indices, open_dataset, resolve_label
from .image_datasets import ImageDataset
from ..preprocess import PreprocessSpec, preprocess_batch


@dataclass
class HeldOut:
    normals: np.ndarray  # preprocessed held-out normals (threshold re-derivation)
    recorded_scores: np.ndarray | None  # their fp32 held-out scores from fit.json, None for plain val normals
    test: np.ndarray  # preprocessed test images
    test_labels: np.ndarray | None  # 1 = anomaly, None when unlabelled
    source: str  # how the normals were chosen


def spaced(idx: np.ndarray, n: int) -> np.ndarray:
    """At most ``n`` of ``idx``, evenly spaced over it."""
    if n >= len(idx):
        return idx
    return idx[np.unique(np.linspace(0, len(idx) - 1, n).round().astype(int))]


def read_batch(ds: ImageDataset, idx: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Images ``idx`` of ``ds``, preprocessed into one ``N x C x H x W`` batch."""
    return preprocess_batch((ds.image(int(i)) for i in idx), spec)


def held_out(source: str, spec: PreprocessSpec, normal_label: str | None, fit: dict, max_test: int) -> HeldOut:
    """Hold-out normals for the threshold and labelled test images for the comparison."""
    parts = fit.get("holdout", {}).get("parts", []) if fit.get("data") == source else []
    if parts:
        normals = np.concatenate([read_batch(open_dataset(source, p["split"]), np.asarray(p["indices"], np.int64),
                                             spec) for p in parts])
        recorded = np.concatenate([np.asarray(p["raw_scores"], np.float64) for p in parts])
        how = "the fp32 threshold's cross-fitted normals (fit.json)"
    else:
        val = open_dataset(source, "val")
        normals, recorded, how = read_batch(val, class_indices(val, normal_label), spec), None, "val normals"
    test = open_dataset(source, "test")
    tidx = spaced(np.arange(len(test)), max_test)
    labels = None
    if normal_label is not None and test.labelled:
        labels = (test.labels[tidx] != resolve_label(test, normal_label)).astype(np.int64)
    return HeldOut(normals, recorded, read_batch(test, tidx, spec), labels, how)
