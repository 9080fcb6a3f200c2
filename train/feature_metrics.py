"""Frozen-feature quality from embeddings alone, the same keys for ``evaluate --run`` (torch embeddings)
and ``evaluate --bundle`` (the runtime's):

* ``knn_accuracy``: weighted kNN (k=200, cosine, T=0.1) from train to test embeddings, and
  ``knn_balanced_accuracy``: the mean over test classes of their recall (chance: 1 / classes);
  ``majority_class`` / ``majority_rate``: the most frequent test class and its share, the accuracy
  of always answering it (what ``knn_accuracy`` must beat to say anything);
* ``linear_probe_accuracy``: multinomial logistic regression on standardised train embeddings;
* ``knn_auroc`` (with a normal class): one-class, the mean cosine distance to the 5 nearest normal
  training embeddings as the anomaly score, normal test images vs all others.
"""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.data.metrics import auroc

from .knn import knn_distance, knn_predict


def linear_probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Accuracy of an L2-regularised logistic regression fitted on the train embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
    clf.fit(scaler.transform(train_x), train_y)
    return float((clf.predict(scaler.transform(test_x)) == test_y).mean())


def balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``y_true``."""
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in np.unique(y_true)]))


def _name(index: int, class_names: list[str] | None) -> str:
    return class_names[index] if class_names else str(index)


def feature_metrics(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                    normal: int | None, class_names: list[str] | None, *, k: int, linear_probe: bool) -> dict:
    """The metrics above as a JSON-able dict (classification keys only with several training classes);
    ``majority_class`` is named from ``class_names`` (its index without them)."""
    out: dict = {"knn_accuracy": None}
    if len(np.unique(train_y)) > 1:  # MVTec-style data has one training class: no classification
        pred = knn_predict(train_x, train_y, test_x, k)
        classes, counts = np.unique(test_y, return_counts=True)
        out.update(knn_accuracy=float((pred == test_y).mean()), knn_balanced_accuracy=balanced_accuracy(test_y, pred),
                   majority_class=_name(int(classes[counts.argmax()]), class_names),
                   majority_rate=float(counts.max() / counts.sum()))
        if linear_probe:
            out["linear_probe_accuracy"] = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    if normal is not None:
        bank = train_x[train_y == normal]
        if len(bank):
            out["knn_auroc"] = auroc(test_y != normal, knn_distance(bank, test_x, k=5))
    return out
