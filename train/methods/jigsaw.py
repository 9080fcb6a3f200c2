"""Jigsaw puzzles (Noroozi & Favaro, 2016): predict which permutation shuffled 3x3 tiles.

The image is cut into a 3x3 grid of cells of ``s = image_size // 3`` pixels; from each cell a
tile of ``s - s // 4`` pixels is cropped at a random offset (the gap and the jitter hide edge
continuity, a shortcut). The nine tiles are shuffled by permutation ``P_c``, one of a fixed set
of K permutations chosen greedily for maximal minimum Hamming distance (``hamming_permutations``),
with c drawn uniformly per image. Each tile, resized up to at least the backbone's smallest input,
is embedded by the shared backbone f; a head h on the nine concatenated embeddings (a siamese
network) predicts c:

    L_jig = -1/N * sum_i log p(c_i | h([f(t_i,P(1)); ...; f(t_i,P(9))])).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from edgessl.edge_runtime.errors import EdgesslError

from ..backbones import MIN_IMAGE_SIZE
from .base import PretextMethod, mlp

GRID = 3
MIN_TILE = 8  # px: smaller tiles carry too little to place


@lru_cache(maxsize=1)
def _all_permutations() -> np.ndarray:
    return np.array(list(itertools.permutations(range(GRID * GRID))), dtype=np.int8)


def hamming_permutations(k: int, seed: int = 0) -> np.ndarray:
    """``k`` permutations of 9 tiles, ``(k, 9)``: a seeded random first one, then greedily the one
    whose minimum Hamming distance to those already chosen is largest (ties: lowest index)."""
    perms = _all_permutations()
    if not 1 <= k <= len(perms):
        raise ValueError(f"k must be in [1, {len(perms)}]")
    chosen = [int(np.random.RandomState(seed).randint(len(perms)))]
    min_dist = (perms != perms[chosen[0]]).sum(1)
    for _ in range(k - 1):
        nxt = int(np.argmax(min_dist))
        chosen.append(nxt)
        np.minimum(min_dist, (perms != perms[nxt]).sum(1), out=min_dist)
    return perms[chosen].astype(np.int64)


class Jigsaw(PretextMethod):
    name = "jigsaw"

    def __init__(self, backbone, spec, augment_config=None, num_permutations: int = 100, seed: int = 0,
                 hidden_dim: int = 512):
        super().__init__(backbone, spec, augment_config)
        self.cell = spec.image_size // GRID
        self.tile = max(1, self.cell - self.cell // 4)
        if self.tile < MIN_TILE:
            raise EdgesslError(f"jigsaw tiles of a {spec.image_size} px image are {self.tile} px, too small to "
                               f"reassemble (at least {MIN_TILE}); use --image-size 32 or more")
        self.tile_input = max(self.tile, MIN_IMAGE_SIZE)
        self.register_buffer("permutations", torch.from_numpy(hamming_permutations(num_permutations, seed)))
        self.head = mlp([GRID * GRID * backbone.feature_dim, hidden_dim, num_permutations])

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 9, C, t, t)``: one jittered tile per grid cell, in row-major order."""
        b = x.shape[0]
        span = torch.arange(self.tile, device=x.device)
        offsets = torch.randint(0, self.cell - self.tile + 1, (b, GRID * GRID, 2), device=x.device)
        rows_b = torch.arange(b, device=x.device)[:, None, None]
        out = []
        for cell in range(GRID * GRID):
            r0, c0 = (cell // GRID) * self.cell, (cell % GRID) * self.cell
            rows = r0 + offsets[:, cell, 0:1] + span  # (B, t)
            cols = c0 + offsets[:, cell, 1:2] + span
            out.append(x[rows_b, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2))
        return torch.stack(out, dim=1)

    def puzzle(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``(B, 9, C, t, t)``: position j of image i shows the tile of cell ``permutations[target_i, j]``."""
        tiles = self.tiles(x)
        order = self.permutations[target].view(len(x), -1, 1, 1, 1)
        return torch.gather(tiles, 1, order.expand_as(tiles))

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = self.inputs(batch)
        b, c = x.shape[:2]
        target = torch.randint(0, len(self.permutations), (b,), device=x.device)
        flat = self.puzzle(x, target).reshape(b * GRID * GRID, c, self.tile, self.tile)
        if self.tile_input != self.tile:
            flat = F.interpolate(flat, size=self.tile_input, mode="bilinear", align_corners=False)
        logits = self.head(self.backbone(flat).reshape(b, -1))
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(1) == target).float().mean()
        return loss, {"acc": float(acc)}
