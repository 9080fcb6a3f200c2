"""Fit the Gaussian detector: mean and Ledoit-Wolf shrunk covariance of normal embeddings.

    Sigma_LW = (1 - delta) S + delta * (tr(S)/D) I,   P = Sigma_LW^{-1},

``S`` the sample covariance and ``delta`` Ledoit-Wolf's closed-form shrinkage; shrinkage keeps
``P`` well conditioned when there are fewer images than embedding dimensions.
"""

from __future__ import annotations

import numpy as np

from edgessl.edge_runtime.detectors import GaussianDetector
from edgessl.edge_runtime.errors import EdgesslError


def fit_gaussian(embeddings: np.ndarray) -> GaussianDetector:
    from sklearn.covariance import LedoitWolf

    x = np.asarray(embeddings, np.float64)
    if len(x) < 2:
        raise EdgesslError(f"the gaussian detector needs at least 2 normal training images (got {len(x)})")
    lw = LedoitWolf(assume_centered=False).fit(x)
    return GaussianDetector(lw.location_, np.linalg.pinv(lw.covariance_, hermitian=True))
