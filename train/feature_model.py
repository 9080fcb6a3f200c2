"""The network that is exported: a backbone plus the fixed set of named outputs detectors use.

Outputs, in this order (the ONNX model has the same names):

* ``embedding``: the pooled backbone embedding, ``(B, D)``;
* ``patches`` (when ``with_patches``): PatchCore-style local features, ``(B, C2 + C3, h, w)``:
  ``layer2`` and ``layer3`` maps each averaged over a 3x3 neighbourhood (stride 1), ``layer3``
  upsampled bilinearly to ``layer2``'s resolution, concatenated along channels.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone


class FeatureModel(nn.Module):
    def __init__(self, backbone: Backbone, with_patches: bool = False):
        super().__init__()
        self.backbone = backbone
        self.with_patches = with_patches

    @property
    def output_names(self) -> list[str]:
        return ["embedding", "patches"] if self.with_patches else ["embedding"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.backbone.feature_maps(x)
        last = maps[self.backbone.stage_names[-1]]
        embedding = torch.flatten(F.adaptive_avg_pool2d(last, 1), 1)
        if not self.with_patches:
            return (embedding,)
        l2 = F.avg_pool2d(maps["layer2"], 3, stride=1, padding=1, count_include_pad=False)
        l3 = F.avg_pool2d(maps["layer3"], 3, stride=1, padding=1, count_include_pad=False)
        l3 = F.interpolate(l3, size=l2.shape[-2:], mode="bilinear", align_corners=False)
        return embedding, torch.cat([l2, l3], dim=1)
