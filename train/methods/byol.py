"""BYOL (Grill et al., 2020): an online network predicts an EMA target network's embedding.

Online: backbone f, projector g, predictor q; target: EMA copies f', g' (see ``ema.py``, momentum
from ``base_momentum`` to 1 on a cosine). For two augmented views v1, v2 of each image,

    p_a = q(g(f(v_a))),   z'_a = g'(f'(v_a))  (no gradient),
    L = 1/N * sum_i 1/2 * [ (2 - 2 cos(p_1i, z'_2i)) + (2 - 2 cos(p_2i, z'_1i)) ],

i.e. the symmetric mean squared error of unit vectors. No negatives are used; the predictor and
the slowly moving target keep the representation from collapsing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import PretextMethod, mlp
from .ema import cosine_momentum, ema_update, frozen_copy


def byol_loss(p: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Mean of ``2 - 2 cos(p_i, z_i)`` over the batch (``z`` is treated as a constant)."""
    return (2.0 - 2.0 * F.cosine_similarity(p, z.detach(), dim=1)).mean()


class BYOL(PretextMethod):
    name = "byol"

    def __init__(self, backbone, spec, augment_config=None, base_momentum: float = 0.99,
                 hidden_dim: int = 1024, proj_dim: int = 256):
        super().__init__(backbone, spec, augment_config)
        self.base_momentum = base_momentum
        self.momentum = base_momentum
        self.projector = mlp([backbone.feature_dim, hidden_dim, proj_dim])
        self.predictor = mlp([proj_dim, hidden_dim, proj_dim])
        self.target_backbone = frozen_copy(backbone)
        self.target_projector = frozen_copy(self.projector)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        v = torch.cat(self.views(batch))
        p1, p2 = self.predictor(self.projector(self.backbone(v))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_backbone(v)).chunk(2)
        loss = 0.5 * (byol_loss(p1, z2) + byol_loss(p2, z1))
        return loss, {"momentum": self.momentum}

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        self.momentum = cosine_momentum(self.base_momentum, progress)
        ema_update([self.backbone, self.projector], [self.target_backbone, self.target_projector], self.momentum)
