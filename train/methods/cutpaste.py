"""CutPaste (Li et al., CVPR 2021), the 3-way variant: normal / cut-paste / scar.

Each normal image ``x`` yields three inputs: ``x`` itself (class 0); ``x`` with a rectangle
(area ``U(2%, 15%)`` of the image, aspect ratio log-uniform in ``[0.3, 3.3]``) replaced by a
colour-jittered patch of the same image from elsewhere (class 1); and ``x`` with a thin rotated
rectangle, the scar (``U(2, 16)`` x ``U(10, 25)`` pixels, rotated ``U(+-45)`` degrees), filled the
same way (class 2). A two-layer MLP head ``g`` on the pooled embedding ``f`` classifies them:

    L = -1/(3N) sum_i sum_{c in 0,1,2} log softmax(g(f(aug_c(x_i))))_c

The paper's detector is a Gaussian density on ``f`` of normal images (Mahalanobis distance):
``edgessl fit --detector gaussian``; measured here (``benchmarks/bench_quality.py``, ELPV) the patch
detector did best, so it is ``fit``'s default for cutpaste runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import PretextMethod, mlp
from .synthetic import check_fits, jitter, paste, rectangle_masks, rotated_rectangle_masks, shifted


@dataclass(frozen=True)
class CutPasteConfig:
    area: tuple[float, float] = (0.02, 0.15)
    aspect: tuple[float, float] = (0.3, 3.3)
    scar_width: tuple[float, float] = (2.0, 16.0)
    scar_length: tuple[float, float] = (10.0, 25.0)
    scar_angle: float = 45.0
    jitter: float = 0.1


class CutPaste(PretextMethod):
    name = "cutpaste"
    default_detector_kind = "gaussian"  # measured (bench_quality.py, ELPV, 600 s): 0.741 against patch 0.726

    def __init__(self, backbone, spec, augment_config=None, config: CutPasteConfig | None = None):
        super().__init__(backbone, spec, augment_config)
        self.config = config or CutPasteConfig()
        check_fits("the CutPaste scar's length", self.config.scar_length[1], spec.image_size)
        self.head = mlp([backbone.feature_dim, 512, 3])

    def synthesise(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The cut-paste and scar versions of a ``[0, 1]`` batch."""
        c = self.config
        b, _, h, w = x.shape
        box = rectangle_masks(b, h, w, c.area, c.aspect, x.device)
        scar = rotated_rectangle_masks(b, h, w, c.scar_width, c.scar_length, c.scar_angle, x.device)
        return (paste(x, box, jitter(shifted(x), c.jitter)), paste(x, scar, jitter(shifted(x), c.jitter)))

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = batch.float() * (1.0 / 255.0)
        inputs = torch.cat([x, *self.synthesise(x)]) * 255.0
        target = torch.arange(3, device=x.device).repeat_interleave(len(x))
        logits = self.head(self.backbone(self.inputs(inputs)))
        loss = F.cross_entropy(logits, target)
        return loss, {"acc": float((logits.argmax(1) == target).float().mean())}
