"""Batched view augmentations for the contrastive methods, on ``[0, 1]`` float batches.

Each image of a batch draws its own parameters; everything is one tensor op per transform, so it
runs on whatever device the batch is on:

* random resized crop: area fraction ``U(scale)``, aspect ratio log-uniform in ``[3/4, 4/3]``,
  resampled with a per-image affine grid (bilinear); a side longer than the image is cut to it, so
  above an area of 3/4 a view can keep less than drawn (down to ``sqrt(3/4 * area)``);
* horizontal flip with probability 1/2;
* colour jitter with probability ``jitter_p``: brightness and contrast factors ``U(1 +- s)``,
  saturation for RGB;
* random greyscale with probability ``grey_p`` (RGB only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .config import PretrainConfig


@dataclass(frozen=True)
class AugmentConfig:
    crop_scale: tuple[float, float] = (PretrainConfig.crop_min, 1.0)
    flip: bool = True
    jitter_p: float = 0.8
    strength: float = 0.4
    grey_p: float = 0.2


def random_resized_crop(x: torch.Tensor, scale: tuple[float, float]) -> torch.Tensor:
    b = x.shape[0]
    dev = x.device
    area = torch.empty(b, device=dev).uniform_(*scale)
    log_r = torch.empty(b, device=dev).uniform_(math.log(3 / 4), math.log(4 / 3))
    ratio = torch.exp(log_r)
    w = torch.sqrt(area * ratio).clamp(max=1.0)
    h = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (torch.rand(b, device=dev) * 2 - 1) * (1 - w)
    cy = (torch.rand(b, device=dev) * 2 - 1) * (1 - h)
    theta = torch.zeros(b, 2, 3, device=dev)
    theta[:, 0, 0], theta[:, 0, 2] = w, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _per_image(p: float, b: int, dev) -> torch.Tensor:
    return (torch.rand(b, 1, 1, 1, device=dev) < p).float()


def colour_jitter(x: torch.Tensor, strength: float, p: float) -> torch.Tensor:
    b, c = x.shape[:2]
    dev = x.device
    apply = _per_image(p, b, dev)

    def factor() -> torch.Tensor:
        f = 1 + (torch.rand(b, 1, 1, 1, device=dev) * 2 - 1) * strength
        return apply * f + (1 - apply)

    x = x * factor()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * factor() + mean
    if c == 3:
        grey = x.mean(dim=1, keepdim=True)
        x = (x - grey) * factor() + grey
    return x.clamp(0, 1)


def augment(x: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    """One random view of every image of a ``[0,1]`` batch ``B x C x H x W``."""
    x = random_resized_crop(x, cfg.crop_scale)
    if cfg.flip:
        flip = _per_image(0.5, x.shape[0], x.device)
        x = flip * x.flip(3) + (1 - flip) * x
    x = colour_jitter(x, cfg.strength, cfg.jitter_p)
    if x.shape[1] == 3 and cfg.grey_p > 0:
        g = _per_image(cfg.grey_p, x.shape[0], x.device)
        x = g * x.mean(dim=1, keepdim=True).expand_as(x) + (1 - g) * x
    return x
