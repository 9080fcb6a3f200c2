"""Nearest-neighbour search in numpy, chunked so memory stays bounded.

One distance underlies every detector and the training-side kNN: the Euclidean distance.
Cosine distance is the same thing on L2-normalised vectors:

    1 - cos(q, b) = ||q/|q| - b/|b|||^2 / 2.

Candidates are found from ``|q|^2 + |b|^2 - 2 q.b`` in float32, blocks of queries at a time
(at most ``BLOCK_ELEMENTS`` query-bank pairs, or query-neighbour-feature values, per block); the distances to the k chosen
neighbours are then recomputed exactly as ``sum((q - b)^2)`` in float64, so near-zero distances
keep their precision and the result does not depend on the block size.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgesslError

BLOCK_ELEMENTS = 1 << 22  # query x bank pairs per block: 16 MiB of float32 similarities
MAX_BLOCK_ROWS = 4096


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def squared_norms(bank: np.ndarray) -> np.ndarray:
    """``|b|^2`` per row: detectors compute it once at load instead of on every frame."""
    bank = np.asarray(bank, np.float32)
    return np.einsum("ij,ij->i", bank, bank)


def nearest(query: np.ndarray, bank: np.ndarray, k: int,
            bank_sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest ``bank`` rows of every ``query`` row by Euclidean distance.

    Returns ``(sq_dist, idx)``, both ``(Q, k)``: squared distances (float64, ascending) and bank
    indices. ``k`` larger than the bank is clipped to the bank size. ``bank_sq``: the bank's
    ``squared_norms``, when the caller keeps them.
    """
    query = np.asarray(query, np.float32)
    bank = np.asarray(bank, np.float32)
    if query.ndim != 2 or bank.ndim != 2 or query.shape[1] != bank.shape[1]:
        raise EdgesslError(f"feature size mismatch: query {query.shape} vs memory bank {bank.shape}")
    if len(bank) == 0:
        raise EdgesslError("the memory bank is empty")
    k = max(1, min(k, len(bank)))
    if bank_sq is None:
        bank_sq = squared_norms(bank)
    rows = int(np.clip(BLOCK_ELEMENTS // max(len(bank), k * bank.shape[1]), 1, MAX_BLOCK_ROWS))
    dists = np.empty((len(query), k), np.float64)
    index = np.empty((len(query), k), np.int64)
    for s in range(0, len(query), rows):
        q = query[s : s + rows]
        approx = bank_sq[None, :] - 2.0 * (q @ bank.T)  # |q|^2 is constant per row: not needed to rank
        top = np.argpartition(approx, k - 1, axis=1)[:, :k] if k < len(bank) else \
            np.broadcast_to(np.arange(len(bank)), (len(q), k))
        diff = q[:, None, :].astype(np.float64) - bank[top].astype(np.float64)
        exact = np.einsum("qkd,qkd->qk", diff, diff)
        order = np.argsort(exact, axis=1, kind="stable")
        dists[s : s + rows] = np.take_along_axis(exact, order, axis=1)
        index[s : s + rows] = np.take_along_axis(top, order, axis=1)
    return dists, index


def topk_cosine(query: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities ``(Q, k)`` (descending) and indices of the ``k`` most similar bank rows."""
    sq, idx = nearest(l2_normalise(query), l2_normalise(bank), k)
    return 1.0 - 0.5 * sq, idx


def mean_cosine_distance(query: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance ``1 - cos`` from each query row to its ``k`` nearest bank rows."""
    sq, _ = nearest(l2_normalise(query), l2_normalise(bank), k)
    return 0.5 * sq.mean(axis=1)
