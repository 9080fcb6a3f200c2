"""Fitting the anomaly detectors on normal images (torch/scikit-learn); scoring lives in
``edge_runtime.detectors`` (numpy), so evaluation and the device compute the same score."""

from __future__ import annotations

from .combined import combined_scores, fit_combined
from .gaussian import fit_gaussian
from .knn import fit_knn
from .patch import fit_patch

__all__ = ["combined_scores", "fit_combined", "fit_gaussian", "fit_knn", "fit_patch"]
