"""Rotation prediction (Gidaris et al., 2018).

Every image is shown at 0, 90, 180 and 270 degrees; a linear head on the embedding predicts
which rotation r was applied:

    L_rot = -1/(4N) * sum_i sum_r log p(r | rot_r(x_i))
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import PretextMethod


class RotationPrediction(PretextMethod):
    name = "rotation"

    def __init__(self, backbone, spec, augment_config=None):
        super().__init__(backbone, spec, augment_config)
        self.head = nn.Linear(backbone.feature_dim, 4)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = self.inputs(batch)
        rotated = torch.cat([torch.rot90(x, k, dims=(2, 3)) for k in range(4)])
        target = torch.arange(4, device=x.device).repeat_interleave(len(x))
        logits = self.head(self.backbone(rotated))
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(1) == target).float().mean()
        return loss, {"acc": float(acc)}
