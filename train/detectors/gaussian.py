"""Fit the Gaussian detector: mean and Ledoit-Wolf shrunk covariance of normal embeddings.

    Sigma_LW = (1 - delta) S + delta * (tr(S)/D) I,   P = Sigma_LW^{-1},

``S`` the sample covariance and ``delta`` Ledoit-Wolf's closed-form shrinkage; shrinkage keeps
``P`` well conditioned when there are fewer images than embedding dimensions. ``delta`` shrinks
as images are added, and with it the scale of the distances; so the fold detectors that give the
threshold its cross-fitted scores take the ``delta`` of all the images, the shipped detector's
(``fit.crossfit_scores``), and their scores are on the shipped detector's scale.
"""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors import GaussianDetector
from edgessl.edge_runtime.errors import EdgesslError


def ledoit_wolf_delta(embeddings: np.ndarray) -> float:
    """Ledoit-Wolf's shrinkage ``delta`` for these embeddings."""
    from sklearn.covariance import ledoit_wolf_shrinkage

    return float(ledoit_wolf_shrinkage(np.asarray(embeddings, np.float64), assume_centered=False))


def fit_gaussian(embeddings: np.ndarray, delta: float | None = None) -> GaussianDetector:
    """The detector of ``embeddings``, shrunk by ``delta`` (None: Ledoit-Wolf's for these embeddings)."""
    from sklearn.covariance import ShrunkCovariance

    x = np.asarray(embeddings, np.float64)
    if len(x) < 2:
        raise EdgesslError(f"the gaussian detector needs at least 2 normal training images (got {len(x)})")
    cov = ShrunkCovariance(shrinkage=ledoit_wolf_delta(x) if delta is None else delta, assume_centered=False).fit(x)
    return GaussianDetector(cov.location_, np.linalg.pinv(cov.covariance_, hermitian=True))
