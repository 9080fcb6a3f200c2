"""Embedding metrics: kNN accuracy beside balanced accuracy and the majority-class rate, so a kNN that
answers the majority class everywhere is seen for what it is."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sklearn")

from edgessl.train.feature_metrics import balanced_accuracy, feature_metrics  # noqa: E402


def test_a_majority_voting_knn_scores_the_majority_rate_and_half_balanced():
    rng = np.random.default_rng(0)
    # every embedding alike: kNN with k larger than the minority class votes the majority class
    train_x = rng.normal(size=(100, 8)) * 1e-3 + 1.0
    train_y = np.r_[np.zeros(80, int), np.ones(20, int)]
    test_x = rng.normal(size=(50, 8)) * 1e-3 + 1.0
    test_y = np.r_[np.zeros(37, int), np.ones(13, int)]
    out = feature_metrics(train_x, train_y, test_x, test_y, 1, ["malignant", "benign"], k=60, linear_probe=False)
    assert out["knn_accuracy"] == pytest.approx(out["majority_rate"]) == pytest.approx(37 / 50)
    assert out["majority_class"] == "malignant" and out["knn_balanced_accuracy"] == pytest.approx(0.5)
    assert 0.0 <= out["knn_auroc"] <= 1.0


def test_balanced_accuracy_is_the_mean_recall():
    y = np.array([0, 0, 0, 0, 1, 1, 2])
    pred = np.array([0, 0, 1, 1, 1, 1, 0])
    assert balanced_accuracy(y, pred) == pytest.approx((0.5 + 1.0 + 0.0) / 3)


def test_one_training_class_has_no_classification_keys():
    x = np.random.default_rng(1).normal(size=(20, 4))
    out = feature_metrics(x, np.zeros(20, int), x[:5], np.r_[np.zeros(3, int), np.ones(2, int)], 0, ["good", "bad"],
                          k=5, linear_probe=True)
    assert out["knn_accuracy"] is None and "majority_class" not in out and "knn_auroc" in out
