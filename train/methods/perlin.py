"""Noise-masked texture perturbation (DRAEM-style, Zavrtanik et al., ICCV 2021), with a localisation target.

Every image first gets a mild random view (``synthetic.shared_view``, the same kind for the altered
and the normal half), then half of each batch is altered: a blob mask ``m`` (Perlin noise, lattice of 2, 4 or 8 cells, above
``threshold``) selects where a texture ``t`` replaces the image, blended with opacity ``beta``:

    x' = x (1 - m) + ((1 - beta) t + beta x) m,        beta ~ U(0, 0.8),

``t`` being another training image of the batch, rotated by a multiple of 90 degrees, flipped and
colour-jittered (textures from the training images themselves, where DRAEM uses an external
texture set). Two heads learn where and whether: a 1x1 convolution ``s`` on the patch features
``p`` (``layer2`` and upsampled ``layer3``, the detector's grid) predicts the mask, and a linear
head ``g`` on the pooled embedding predicts altered or not:

    L = BCE(s(p(x')), avgpool(m)) + CE(g(f(x')), [m != 0])

(the mask target is ``m`` averaged onto the feature grid). ``edgessl fit``'s default detector
applies here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..feature_model import PATCH_STAGES
from .base import PretextMethod
from .synthetic import jitter, perlin_noise, shared_view


@dataclass(frozen=True)
class PerlinConfig:
    scales: tuple[int, ...] = (2, 4, 8)
    threshold: float = 0.3
    max_beta: float = 0.8
    jitter: float = 0.3
    altered_fraction: float = 0.5


class PerlinPaste(PretextMethod):
    name = "perlin"

    def __init__(self, backbone, spec, augment_config=None, config: PerlinConfig | None = None):
        super().__init__(backbone, spec, augment_config)
        self.config = config or PerlinConfig()
        self.seg_head = nn.Conv2d(sum(backbone.channels[s] for s in PATCH_STAGES), 1, 1)
        self.cls_head = nn.Linear(backbone.feature_dim, 2)

    def textures(self, x: torch.Tensor) -> torch.Tensor:
        """Another image of the batch for each image, rotated, maybe flipped, jittered."""
        t = torch.roll(x, 1, dims=0)
        t = torch.rot90(t, int(torch.randint(4, (1,))), dims=(2, 3))
        if torch.rand(()) < 0.5:
            t = t.flip(3)
        return jitter(t, self.config.jitter)

    def synthesise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The altered batch and its masks ``(B, 1, H, W)`` (all-zero for the images left normal)."""
        c = self.config
        b, _, h, w = x.shape
        m = (perlin_noise(b, h, w, c.scales, x.device) > c.threshold).float()
        m = m * (torch.rand(b, 1, 1, 1, device=x.device) < c.altered_fraction).float()
        beta = torch.rand(b, 1, 1, 1, device=x.device) * c.max_beta
        return x * (1 - m) + ((1 - beta) * self.textures(x) + beta * x) * m, m

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        altered, mask = self.synthesise(shared_view(batch.float() * (1.0 / 255.0)))
        maps = self.backbone.feature_maps(self.inputs(altered * 255.0))
        l2, l3 = (maps[s] for s in PATCH_STAGES)
        p = torch.cat([l2, F.interpolate(l3, size=l2.shape[-2:], mode="bilinear", align_corners=False)], dim=1)
        seg = self.seg_head(p)
        target = F.adaptive_avg_pool2d(mask, seg.shape[-2:])
        last = maps[self.backbone.stage_names[-1]]
        logits = self.cls_head(torch.flatten(F.adaptive_avg_pool2d(last, 1), 1))
        label = (mask.flatten(1).amax(1) > 0).long()
        loss = F.binary_cross_entropy_with_logits(seg, target) + F.cross_entropy(logits, label)
        return loss, {"acc": float((logits.argmax(1) == label).float().mean())}
