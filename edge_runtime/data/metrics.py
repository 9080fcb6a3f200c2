"""Ranking metrics in numpy, shared by training-side evaluation and the runtime.

Convention: a higher score means more anomalous (or more positive); ``labels`` are 1 for positive.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgesslError


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise EdgesslError("labels and scores differ in length")
    if labels.all() or not labels.any():
        raise EdgesslError("these metrics need both normal and anomalous examples")
    return labels, scores


def average_ranks(x: np.ndarray) -> np.ndarray:
    """The 1-based rank of each value of ``x``; tied values share the average of their ranks."""
    x = np.asarray(x, np.float64).ravel()
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), np.float64)
    sx = x[order]
    starts = np.flatnonzero(np.r_[True, sx[1:] != sx[:-1]])
    ends = np.r_[starts[1:], len(x)]
    for s, e in zip(starts, ends):
        ranks[order[s:e]] = 0.5 * (s + e - 1) + 1
    return ranks


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row (image) of ``a`` and ``b``, flattened beyond the first axis."""
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(den > 0, (a * b).sum(1) / np.maximum(den, 1e-30), 1.0)


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties counting 1/2.

    Computed from average ranks (the Mann-Whitney U statistic).
    """
    labels, scores = _check(labels, scores)
    ranks = average_ranks(scores)
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _ranked(labels: np.ndarray, scores: np.ndarray):
    """Cumulative true/false positives at each distinct score, taken as threshold (``score >= t``), descending."""
    labels, scores = _check(labels, scores)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), len(s) - 1]  # last index of each tie group
    tp = np.cumsum(y)[last].astype(np.float64)
    fp = (last + 1 - tp).astype(np.float64)
    return tp, fp, s[last], float(labels.sum()), float((~labels).sum())


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, tpr, thresholds)`` for every distinct score as threshold, starting at (0, 0)."""
    tp, fp, thr, n_pos, n_neg = _ranked(labels, scores)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos], np.r_[np.inf, thr]


def aupr(labels: np.ndarray, scores: np.ndarray) -> float:
    """Average precision: ``sum_i (R_i - R_{i-1}) P_i`` over distinct thresholds (scikit-learn's definition)."""
    tp, fp, _, n_pos, _ = _ranked(labels, scores)
    recall = tp / n_pos
    precision = tp / (tp + fp)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_max(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """The best F1 over thresholds ``score >= t``, and that ``t`` (the lowest score reaching it)."""
    tp, fp, thr, n_pos, _ = _ranked(labels, scores)
    f1 = 2 * tp / (tp + fp + n_pos)  # 2PR/(P+R) with P = tp/(tp+fp), R = tp/n_pos
    best = int(np.argmax(f1))
    return float(f1[best]), float(thr[best])


def rates_at_threshold(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    """``(fpr, tpr)`` of the decision ``score >= threshold``."""
    labels, scores = _check(labels, scores)
    flagged = scores >= threshold
    return float(flagged[~labels].mean()), float(flagged[labels].mean())


def pixel_auroc(masks: list[np.ndarray], maps: list[np.ndarray]) -> float:
    """AUROC over all pixels of all images: mask > 0 is positive, the map value the score.

    Each mask must have its map's shape (resize both to the model input first:
    ``edge_runtime.heatmaps``).
    """
    if len(masks) != len(maps) or not masks:
        raise EdgesslError(f"pixel AUROC needs one mask per map (got {len(masks)} masks, {len(maps)} maps)")
    for i, (m, a) in enumerate(zip(masks, maps)):
        if np.shape(m) != np.shape(a):
            raise EdgesslError(f"mask {i} has shape {np.shape(m)} but its anomaly map {np.shape(a)}")
    return auroc(np.concatenate([np.ravel(m) > 0 for m in masks]), np.concatenate([np.ravel(a) for a in maps]))
