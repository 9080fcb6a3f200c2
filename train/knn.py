"""kNN on embeddings (numpy): the SSL benchmarks' weighted kNN classifier and the one-class distance.

The neighbour search is the runtime's (``edge_runtime.detectors.neighbours``), so the one-class
distance here is exactly the ``knn`` detector's score.

Weighted kNN (Wu et al., 2018): with cosine similarities s_j to the k nearest training embeddings,
class c scores sum_j [y_j = c] exp(s_j / T); the prediction is the best-scoring class.
"""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors.neighbours import mean_cosine_distance, topk_cosine


def knn_predict(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                k: int = 200, temperature: float = 0.1) -> np.ndarray:
    """Weighted-kNN class predictions for ``test_x``."""
    sims, idx = topk_cosine(test_x, train_x, k)
    n_classes = int(train_y.max()) + 1
    votes = np.zeros((len(test_x), n_classes))
    weights = np.exp(sims / temperature)
    np.add.at(votes, (np.arange(len(test_x))[:, None], train_y[idx]), weights)
    return votes.argmax(1)


def knn_distance(bank: np.ndarray, query: np.ndarray, k: int = 5) -> np.ndarray:
    """Mean cosine distance (1 - cos) from each query to its k nearest bank embeddings."""
    return mean_cosine_distance(query, bank, k)
