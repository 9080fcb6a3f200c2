"""The embedding-based metrics of ``evaluate --run`` (kNN accuracy, linear probe, kNN AUROC) on the
runtime's embeddings, for ``evaluate --bundle``: so both print the same keys, computed alike."""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.data.metrics import auroc

from .knn import knn_distance, knn_predict


def feature_metrics(k: int = 200, linear_probe: bool = True):
    """A ``feature_metrics`` callback for ``edge_runtime.evaluation.evaluate_bundle``."""

    def compute(train_x, train_y, test_x, test_y, normal: int) -> dict:
        out: dict = {"knn_accuracy": None}
        if len(np.unique(train_y)) > 1:
            out["knn_accuracy"] = float((knn_predict(train_x, train_y, test_x, k) == test_y).mean())
            if linear_probe:
                from .evaluate import linear_probe_accuracy

                out["linear_probe_accuracy"] = linear_probe_accuracy(train_x, train_y, test_x, test_y)
        bank = train_x[train_y == normal]
        if len(bank):
            out["knn_auroc"] = auroc(test_y != normal, knn_distance(bank, test_x, k=5))
        return out

    return compute
