"""SimCLR (Chen et al., 2020): two augmented views, a projection head, the NT-Xent loss.

With ``z`` the L2-normalised projections of the 2N views and ``j(i)`` the other view of image i:

    l_i = -log( exp(sim(z_i, z_j(i)) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),
    L   = 1/(2N) * sum_i l_i,

the denominator running over the 2N-1 other samples; ``sim`` is the dot product of unit vectors.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import PretextMethod, mlp


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent over the 2N projections of N positive pairs (rows of ``z1`` and ``z2``)."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = len(z1)
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(sim, target)


class SimCLR(PretextMethod):
    name = "simclr"

    def __init__(self, backbone, spec, augment_config=None, temperature: float = 0.2, proj_dim: int = 128):
        super().__init__(backbone, spec, augment_config)
        self.temperature = temperature
        d = backbone.feature_dim
        self.projector = mlp([d, d, proj_dim])

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        v1, v2 = self.views(batch)
        z = self.projector(self.backbone(torch.cat([v1, v2])))
        z1, z2 = z.chunk(2)
        return nt_xent(z1, z2, self.temperature), {}
