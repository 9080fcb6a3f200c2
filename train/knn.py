"""kNN on embeddings (numpy): the SSL benchmarks' weighted kNN classifier and the one-class distance.

Weighted kNN (Wu et al., 2018): with cosine similarities s_j to the k nearest training embeddings,
class c scores sum_j [y_j = c] exp(s_j / T); the prediction is the best-scoring class.
"""

from __future__ import annotations

import numpy as np


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _topk_cosine(query: np.ndarray, bank: np.ndarray, k: int, chunk: int = 1024):
    q, b = l2_normalise(query), l2_normalise(bank)
    k = min(k, len(b))
    sims, idx = [], []
    for i in range(0, len(q), chunk):
        s = q[i : i + chunk] @ b.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        sims.append(np.take_along_axis(s, top, axis=1))
        idx.append(top)
    return np.concatenate(sims), np.concatenate(idx)


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                k: int = 200, temperature: float = 0.1) -> np.ndarray:
    """Weighted-kNN class predictions for ``test_x``."""
    sims, idx = _topk_cosine(test_x, train_x, k)
    n_classes = int(train_y.max()) + 1
    votes = np.zeros((len(test_x), n_classes))
    weights = np.exp(sims / temperature)
    np.add.at(votes, (np.arange(len(test_x))[:, None], train_y[idx]), weights)
    return votes.argmax(1)


def knn_distance(bank: np.ndarray, query: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean cosine distance (1 - cos) from each query to its k nearest bank embeddings."""
    sims, _ = _topk_cosine(query, bank, k)
    return (1.0 - sims).mean(axis=1)
