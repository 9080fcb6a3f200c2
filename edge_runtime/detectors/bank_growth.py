"""Growing a memory bank with new normal rows, bounded: a greedy k-center extension.

Given a bank ``B`` and new rows ``X``, add at most ``room = max_rows - |B|`` rows of ``X``, each the
one farthest from everything in the bank so far,

    x_{t+1} = argmax_{x in X} min_{b in B + {x_1..x_t}} ||x - b||,

stopping early when every remaining row lies in the bank already (distance 0). This is the greedy
coreset of ``train/detectors/coreset.py`` continued from the existing bank instead of a random
start: the bank keeps every row it had (the detector never gets worse on what it knew) and spends
its room on the new condition's most novel rows. Exact distances in float32, one
matrix-vector product over ``X`` per pick.
"""

from __future__ import annotations

import numpy as np

from ..errors import EdgesslError
from .neighbours import nearest, squared_norms


def farthest_rows(bank: np.ndarray, rows: np.ndarray, room: int) -> np.ndarray:
    """Indices (in pick order) of at most ``room`` of ``rows``, picked greedily farthest from ``bank``."""
    rows = np.asarray(rows, np.float32)
    if room <= 0 or len(rows) == 0:
        return np.zeros(0, np.int64)
    min_sq = nearest(rows, bank, 1)[0][:, 0]
    rows_sq = squared_norms(rows)
    picked: list[int] = []
    for _ in range(min(room, len(rows))):
        i = int(np.argmax(min_sq))
        if min_sq[i] <= 0.0:
            break
        picked.append(i)
        np.minimum(min_sq, np.maximum(rows_sq + rows_sq[i] - 2.0 * (rows @ rows[i]), 0.0), out=min_sq)
        min_sq[i] = 0.0
    return np.asarray(picked, np.int64)


def grow_bank(bank: np.ndarray, rows: np.ndarray, max_rows: int, name: str) -> np.ndarray:
    """``bank`` followed by the ``farthest_rows`` of ``rows`` that fit in ``max_rows`` rows; a
    ``max_rows`` not above the bank's size is refused (nothing could be added; ``name``: the bank's)."""
    if max_rows <= len(bank):
        raise EdgesslError(f"--max-bank {max_rows} is not above the {len(bank)} rows the {name} memory bank holds "
                           "already, so nothing could be added; raise --max-bank (or adapt from the base, --no-delta)")
    picked = farthest_rows(bank, rows, max_rows - len(bank))
    return np.concatenate([np.asarray(bank, np.float32), np.asarray(rows, np.float32)[picked]])
