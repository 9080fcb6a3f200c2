"""A classifier's test metrics from its probabilities (torch-free; ``evaluate --bundle``).

With ``y`` the true and ``yhat = argmax_k p_k`` the predicted class of each image:

* ``accuracy = mean(yhat == y)``;
* ``per_class_recall[c] = #(yhat = c and y = c) / #(y = c)`` (null for a class with no test image);
* ``balanced_accuracy``: the mean of the per-class recalls that exist;
* ``confusion_matrix[i][j] = #(y = i and yhat = j)`` (rows true, columns predicted, class order);
* ``positive_auroc`` (with a positive class P): the AUROC of ``p_P`` for ``y = P`` against all others
  (null when the test images are all, or none, of P).
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgesslError
from .metrics import auroc


def classifier_labels(test_classes: list[str], classes: list[str], source: str) -> np.ndarray:
    """For each class index of the test data, the classifier's index of the same name."""
    missing = [c for c in test_classes if c not in classes]
    if missing:
        raise EdgesslError(f"{source}: class {missing[0]!r} is not one of the classifier's ({', '.join(classes)})")
    return np.array([classes.index(c) for c in test_classes], np.int64)


def classification_report(y: np.ndarray, probabilities: np.ndarray, classes: list[str],
                          positive_class: str | None) -> dict:
    """The metrics above for true classifier indices ``y`` ``(N,)`` and ``probabilities`` ``(N, K)``."""
    y = np.asarray(y, np.int64)
    pred = np.asarray(probabilities).argmax(1)
    k = len(classes)
    confusion = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    counts = confusion.sum(1)
    recall = {c: (float(confusion[i, i] / counts[i]) if counts[i] else None) for i, c in enumerate(classes)}
    present = [r for r in recall.values() if r is not None]
    out = {"test_images": int(len(y)), "accuracy": float((pred == y).mean()),
           "balanced_accuracy": float(np.mean(present)), "per_class_recall": recall,
           "confusion_matrix": confusion.tolist(), "classes": list(classes), "positive_class": positive_class,
           "positive_auroc": None}
    if positive_class is not None:
        p = classes.index(positive_class)
        is_positive = y == p
        if 0 < is_positive.sum() < len(y):
            out["positive_auroc"] = auroc(is_positive, np.asarray(probabilities)[:, p])
    return out
