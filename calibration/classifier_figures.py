"""What INT8 changes in a classifier bundle's decisions: the gate's classifier figures.

On the held-out labelled test images (``holdout.held_out``'s, the same evenly spaced ones), with
``yhat = argmax probabilities``: ``accuracy_fp32``, ``accuracy_int8`` and ``accuracy_change =
accuracy_int8 - accuracy_fp32``; with a positive class P, the AUROC of ``p_P`` (P against all
other classes) at each precision and ``positive_auroc_change``. Images labelled -1 (the detector's
held-out normals, whose classes are not read) are left out.
"""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.data.classification_report import classifier_labels
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.data.holdout import HeldOut, read_batch, spaced
from edgessl.edge_runtime.data.metrics import auroc
from edgessl.edge_runtime.preprocess import PreprocessSpec


def test_classes(source: str, classes: list[str], max_test: int) -> np.ndarray:
    """The classifier's class index of each held-out test image (``held_out``'s selection)."""
    test = open_dataset(source, "test")
    idx = spaced(np.arange(len(test)), max_test)
    return classifier_labels(test.class_names, classes, source)[test.labels[idx]]


def test_images_only(source: str, spec: PreprocessSpec, max_test: int) -> HeldOut:
    """``held_out``'s test images alone, for a bundle with no detector (no normals, no threshold)."""
    test = open_dataset(source, "test")
    empty = np.zeros((0, spec.channels, spec.image_size, spec.image_size), np.float32)
    return HeldOut(empty, None, read_batch(test, spaced(np.arange(len(test)), max_test), spec), None,
                   "none (no detector)")


def classifier_figures(ref: np.ndarray, got: np.ndarray, y: np.ndarray, positive: int | None) -> dict:
    """The figures above from fp32 (``ref``) and INT8 (``got``) probabilities ``(N, K)`` and classes ``y``."""
    keep = y >= 0
    ref, got, y = ref[keep], got[keep], y[keep]
    c32, c8 = int((ref.argmax(1) == y).sum()), int((got.argmax(1) == y).sum())  # counts: an exact change
    out = {"class_images": int(len(y)), "accuracy_fp32": c32 / len(y), "accuracy_int8": c8 / len(y),
           "accuracy_change": (c8 - c32) / len(y)}
    if positive is not None and 0 < (y == positive).sum() < len(y):
        p32, p8 = auroc(y == positive, ref[:, positive]), auroc(y == positive, got[:, positive])
        out.update(positive_auroc_fp32=p32, positive_auroc_int8=p8, positive_auroc_change=p8 - p32)
    return out
