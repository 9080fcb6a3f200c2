"""The network that is exported: a backbone plus the fixed set of named outputs detectors use.

Outputs, in this order (the ONNX model has the same names):

* ``embedding``: the pooled backbone embedding, ``(B, D)``;
* ``patches`` (when ``with_patches``): PatchCore-style local features, ``(B, P, h, w)``:
  the ``layer2`` and ``layer3`` maps (two intermediate stages: local enough to localise, deep
  enough to describe) each averaged over a 3x3 neighbourhood (stride 1, so each vector sees its
  surroundings), ``layer3`` upsampled bilinearly to ``layer2``'s grid (a common grid),
  concatenated along channels (``C = C2 + C3``), then randomly projected to ``P = PATCH_DIM``
  channels when ``C`` is larger: ``f = R x``, ``R`` a fixed ``P x C`` Gaussian matrix with
  entries ``N(0, 1/P)`` (Johnson-Lindenstrauss: distances kept to a few percent), seeded, so the
  same backbone always yields the same ``R``. The projection is part of the exported graph, so
  the memory bank, the coreset, INT8 and the device's nearest-neighbour search all work in ``P``
  dimensions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import Backbone

PATCH_STAGES = ("layer2", "layer3")
PATCH_DIM = 128
PROJECTION_SEED = 0


def patch_projection(in_dim: int, out_dim: int = PATCH_DIM, seed: int = PROJECTION_SEED) -> torch.Tensor | None:
    """``R`` as a 1x1 convolution weight ``(out_dim, in_dim, 1, 1)``; None when no reduction is needed."""
    if in_dim <= out_dim:
        return None
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(out_dim, in_dim, generator=g) / out_dim ** 0.5)[:, :, None, None]


class FeatureModel(nn.Module):
    def __init__(self, backbone: Backbone, with_patches: bool = False):
        super().__init__()
        self.backbone = backbone
        self.with_patches = with_patches
        projection = patch_projection(sum(backbone.channels[s] for s in PATCH_STAGES)) if with_patches else None
        self.register_buffer("projection", projection, persistent=False)

    @property
    def output_names(self) -> list[str]:
        return ["embedding", "patches"] if self.with_patches else ["embedding"]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.backbone.feature_maps(x)
        last = maps[self.backbone.stage_names[-1]]
        embedding = torch.flatten(F.adaptive_avg_pool2d(last, 1), 1)
        if not self.with_patches:
            return (embedding,)
        l2, l3 = (F.avg_pool2d(maps[s], 3, stride=1, padding=1, count_include_pad=False) for s in PATCH_STAGES)
        l3 = F.interpolate(l3, size=l2.shape[-2:], mode="bilinear", align_corners=False)
        patches = torch.cat([l2, l3], dim=1)
        if self.projection is not None:
            patches = F.conv2d(patches, self.projection.to(patches.dtype))
        return embedding, patches
