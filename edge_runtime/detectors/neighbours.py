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
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero.

    The norm is ``sqrt(add.reduce(x * x))``, what ``np.linalg.norm`` computes, without its wrapper.
    """
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.sqrt(np.add.reduce(x * x, axis=1, keepdims=True)), 1e-12)


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
    rows = max(1, min(BLOCK_ELEMENTS // max(len(bank), k * bank.shape[1]), MAX_BLOCK_ROWS))
    if len(query) <= rows:  # one block (every camera frame): no copy into the result arrays
        return _nearest_block(query, bank, k, bank_sq)
    dists = np.empty((len(query), k), np.float64)
    index = np.empty((len(query), k), np.int64)
    for s in range(0, len(query), rows):
        dists[s : s + rows], index[s : s + rows] = _nearest_block(query[s : s + rows], bank, k, bank_sq)
    return dists, index


def _nearest_block(q: np.ndarray, bank: np.ndarray, k: int, bank_sq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``nearest`` for one block of queries, in as few numpy calls as the math allows (each call
    costs about a microsecond, which is the scale of a whole frame's search on a small bank)."""
    approx = q @ bank.T  # then |b|^2 - 2 q.b in place; |q|^2 is constant per row: not needed to rank
    approx *= -2.0
    approx += bank_sq
    if k == 1:
        top = approx.argmin(axis=1)[:, None]
    elif k < len(bank):
        top = np.argpartition(approx, k - 1, axis=1)[:, :k]
    else:
        top = np.broadcast_to(np.arange(len(bank)), (len(q), k))
    diff = bank[top].astype(np.float64)
    diff -= q[:, None, :]
    exact = np.einsum("qkd,qkd->qk", diff, diff)
    if k == 1:
        return exact, top
    order = exact.argsort(axis=1, kind="stable")
    rows = np.arange(len(q))[:, None]
    return exact[rows, order], top[rows, order]


def topk_cosine(query: np.ndarray, bank: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities ``(Q, k)`` (descending) and indices of the ``k`` most similar bank rows."""
    sq, idx = nearest(l2_normalise(query), l2_normalise(bank), k)
    return 1.0 - 0.5 * sq, idx


def mean_cosine_distance(query: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    """Mean cosine distance ``1 - cos`` from each query row to its ``k`` nearest bank rows."""
    sq, _ = nearest(l2_normalise(query), l2_normalise(bank), k)
    return 0.5 * sq.mean(axis=1)
