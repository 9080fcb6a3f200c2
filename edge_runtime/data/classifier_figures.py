"""What another precision or runtime of a classifier bundle changes in its decisions: the figures
``calibrate``'s gate (fp32 against INT8) and ``build-engine``'s check (ONNX Runtime against the
engine) judge a classifier head by.

On the held-out labelled test images (``holdout.held_out``'s, the same evenly spaced ones), with
``yhat = argmax probabilities``, for a reference ``ref`` and a candidate ``got`` (named by
``names``, e.g. ``fp32``/``int8``): ``accuracy_<ref>``, ``accuracy_<got>`` and ``accuracy_change =
accuracy_<got> - accuracy_<ref>``; ``argmax_agreement``, the share of images whose predicted class
is the same; with a positive class P, the AUROC of ``p_P`` (P against all other classes) of each
and ``positive_auroc_change``. Images labelled -1 (the detector's held-out normals, whose classes
are not read) are left out.
"""

from __future__ import annotations

import numpy as np

from .classification_report import classifier_labels
from .datasets import open_dataset
from .holdout import HeldOut, read_batch, spaced
from .metrics import auroc
from ..preprocess import PreprocessSpec

TASK_JUDGED = ("logits", "probabilities")  # a classifier head's outputs: judged by these figures, not by cosine


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


def classifier_figures(ref: np.ndarray, got: np.ndarray, y: np.ndarray, positive: int | None,
                       names: tuple[str, str] = ("fp32", "int8")) -> dict:
    """The figures above from ``ref`` and ``got`` probabilities ``(N, K)`` and classes ``y``."""
    keep = y >= 0
    ref, got, y = ref[keep], got[keep], y[keep]
    a, b = names
    c_ref, c_got = int((ref.argmax(1) == y).sum()), int((got.argmax(1) == y).sum())  # counts: an exact change
    out = {"class_images": int(len(y)), f"accuracy_{a}": c_ref / len(y), f"accuracy_{b}": c_got / len(y),
           "accuracy_change": (c_got - c_ref) / len(y),
           "argmax_agreement": float((ref.argmax(1) == got.argmax(1)).mean())}
    if positive is not None and 0 < (y == positive).sum() < len(y):
        p_ref, p_got = auroc(y == positive, ref[:, positive]), auroc(y == positive, got[:, positive])
        out.update({f"positive_auroc_{a}": p_ref, f"positive_auroc_{b}": p_got, "positive_auroc_change": p_got - p_ref})
    return out
