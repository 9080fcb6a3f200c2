"""CutPaste (Li et al., CVPR 2021), the 3-way variant: normal / cut-paste / scar, with a localisation target.

Each normal image gets a mild random view ``v(x)`` (``synthetic.shared_view``), then yields three
inputs: ``v(x)`` itself (class 0); ``v(x)`` with a rectangle (area ``U(2%, 15%)`` of the image,
aspect ratio log-uniform in ``[0.3, 3.3]``) replaced by a colour-jittered patch of the same image
from elsewhere (class 1); and ``v(x)`` with a thin rotated rectangle, the scar (width ``U(0.8%,
6.3%)`` and length ``U(3.9%, 9.8%)`` of the side: the paper's 2-16 x 10-25 pixels at 256 px,
rotated ``U(+-45)`` degrees), filled the same way (class 2). Defect geometry is proportional to
the image, the view is the same for every class, and the pasted region's edge is feathered
(``synthetic.feathered``) so that neither a seam nor a global photometric change is the cue.

A two-layer MLP head ``g`` on the pooled embedding ``f`` classifies them, and a 1x1 convolution
``s`` on the patch features ``p`` (the detector's grid) says where the pasted pixels are:

    L = CE(g(f(.)), class) + BCE(s(p(.)), avgpool(mask))

The paper's detector is a Gaussian density on ``f``; ``edgessl fit``'s default applies here too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..feature_model import PATCH_STAGES
from .base import PretextMethod, mlp
from .synthetic import (check_size, feathered, jitter, paste, rectangle_masks, rotated_rectangle_masks,
                        shared_view, shifted)

MIN_IMAGE_SIZE = 32  # below it the scar is a pixel or less


@dataclass(frozen=True)
class CutPasteConfig:
    area: tuple[float, float] = (0.02, 0.15)
    aspect: tuple[float, float] = (0.3, 3.3)
    scar_width: tuple[float, float] = (2 / 256, 16 / 256)  # fractions of the image side
    scar_length: tuple[float, float] = (10 / 256, 25 / 256)
    scar_angle: float = 45.0
    jitter: float = 0.1
    feather: float = 1 / 128  # the Gaussian blur of the pasted region's edge, a fraction of the side


class CutPaste(PretextMethod):
    name = "cutpaste"

    def __init__(self, backbone, spec, augment_config=None, config: CutPasteConfig | None = None):
        super().__init__(backbone, spec, augment_config)
        check_size(self.name, MIN_IMAGE_SIZE, spec.image_size)
        self.config = config or CutPasteConfig()
        self.head = mlp([backbone.feature_dim, 512, 3])
        self.seg_head = nn.Conv2d(sum(backbone.channels[s] for s in PATCH_STAGES), 1, 1)

    def synthesise(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
        """The cut-paste and scar versions of a ``[0, 1]`` batch, each with its (soft) mask."""
        c = self.config
        b, _, h, w = x.shape
        sigma = c.feather * min(h, w)
        box = feathered(rectangle_masks(b, h, w, c.area, c.aspect, x.device), sigma)
        scar = feathered(rotated_rectangle_masks(b, h, w, c.scar_width, c.scar_length, c.scar_angle, x.device), sigma)
        return ((paste(x, box, jitter(shifted(x), c.jitter)), box),
                (paste(x, scar, jitter(shifted(x), c.jitter)), scar))

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = shared_view(batch.float() * (1.0 / 255.0))
        (box_x, box_m), (scar_x, scar_m) = self.synthesise(x)
        inputs = torch.cat([x, box_x, scar_x]) * 255.0
        masks = torch.cat([torch.zeros_like(box_m), box_m, scar_m])
        target = torch.arange(3, device=x.device).repeat_interleave(len(x))
        maps = self.backbone.feature_maps(self.inputs(inputs))
        l2, l3 = (maps[s] for s in PATCH_STAGES)
        seg = self.seg_head(torch.cat([l2, F.interpolate(l3, size=l2.shape[-2:], mode="bilinear",
                                                         align_corners=False)], dim=1))
        logits = self.head(torch.flatten(F.adaptive_avg_pool2d(maps[self.backbone.stage_names[-1]], 1), 1))
        loss = F.cross_entropy(logits, target) + F.binary_cross_entropy_with_logits(
            seg, F.adaptive_avg_pool2d(masks, seg.shape[-2:]))
        return loss, {"acc": float((logits.argmax(1) == target).float().mean())}
