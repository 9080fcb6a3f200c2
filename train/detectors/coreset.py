"""Greedy k-center coreset (Sener & Savarese, 2018; PatchCore's memory-bank sub-sampling).

Pick ``n`` of the ``N`` rows so that every row is close to a picked one: start from a random row,
then repeatedly add the row farthest from everything picked so far,

    c_{t+1} = argmax_i min_{j <= t} ||P x_i - P x_{c_j}||,

a 2-approximation of the minimax cover. ``P`` is a Gaussian random projection to
``projection_dim`` dimensions (Johnson-Lindenstrauss; distances kept to a few percent) that
makes each step O(N * projection_dim). Runs in torch, on any device.
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.errors import EdgesslError


def check_coreset(size: int, available: int, what: str) -> None:
    """A coreset cannot hold more than there is to choose from."""
    if size > available:
        raise EdgesslError(f"--coreset {size} is more than the {available} {what}; lower --coreset "
                           "or add normal images")


def greedy_coreset(x: np.ndarray, n: int, projection_dim: int = 128, seed: int = 0,
                   device: torch.device | str = "cpu") -> np.ndarray:
    """Indices (sorted) of ``n`` rows of ``x`` ``(N, D)`` chosen by greedy k-center selection."""
    total = len(x)
    check_coreset(n, total, "feature vectors")
    if n == total:
        return np.arange(total)
    g = torch.Generator().manual_seed(seed)
    feats = torch.as_tensor(np.asarray(x, np.float32)).to(device)
    if feats.shape[1] > projection_dim:
        proj = torch.randn(feats.shape[1], projection_dim, generator=g) / projection_dim ** 0.5
        feats = feats @ proj.to(device)
    sq = (feats * feats).sum(dim=1)

    def sq_dist_to(i: int) -> torch.Tensor:  # |f|^2 + |f_i|^2 - 2 f.f_i: one matrix-vector product
        return sq + sq[i] - 2.0 * (feats @ feats[i])

    chosen = [int(torch.randint(total, (1,), generator=g))]
    min_dist = sq_dist_to(chosen[0])
    for _ in tqdm(range(n - 1), desc="coreset", unit="pt", leave=False, disable=n < 2000):
        chosen.append(int(torch.argmax(min_dist)))
        min_dist = torch.minimum(min_dist, sq_dist_to(chosen[-1]))
    return np.sort(np.asarray(chosen, np.int64))
