"""Backbones: torchvision ResNet-18 (default) and MobileNetV3-Small (light, Jetson-friendly).

Randomly initialised (no weights are downloaded). For small inputs the stem is replaced
(``stem_for_size``; the choice is recorded in the config, so a run always rebuilds its own):

* ``image_size < 24``: 3x3 stride-1 conv, no max-pool (the CIFAR stem);
* ``24 <= image_size <= 96``: 3x3 stride-2 conv, no max-pool (32 px -> 16x16 at layer1: a quarter
  of the stride-1 stem's cost per step, which bought more detection per CPU second on every data
  set measured, docs/detection.md);
* larger: the ImageNet stem (7x7 stride-2 conv and max-pool for ResNet).

``Backbone.forward`` returns the pooled embedding ``(B, D)``; ``feature_maps`` returns the
intermediate maps the patch detector uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torchvision import models

from edgessl.edge_runtime.errors import EdgesslError

from .config import BACKBONES

MIN_IMAGE_SIZE = 16


def stem_for_size(image_size: int) -> int:
    """The stem stride for an input size: 1, 2, or 0 for the ImageNet stem."""
    return 1 if image_size < 24 else 2 if image_size <= 96 else 0


@dataclass(frozen=True)
class BackboneConfig:
    name: str = "resnet18"
    in_channels: int = 3
    image_size: int = 32
    stem_stride: int | None = None  # None: stem_for_size(image_size), filled in at construction

    def __post_init__(self) -> None:
        if self.name not in BACKBONES:
            raise EdgesslError(f"unknown backbone {self.name!r}; choose one of {', '.join(BACKBONES)}")
        if self.image_size < MIN_IMAGE_SIZE:
            raise EdgesslError(f"image size {self.image_size} is too small for {self.name} (at least {MIN_IMAGE_SIZE} px)")
        if self.stem_stride is None:
            object.__setattr__(self, "stem_stride", stem_for_size(self.image_size))

    def to_dict(self) -> dict:
        return asdict(self)


class Backbone(nn.Module):
    """Trunk + global average pooling. ``feature_dim`` is the embedding size."""

    def __init__(self, config: BackboneConfig, stages: nn.ModuleList, stage_names: list[str],
                 stage_channels: list[int]):
        super().__init__()
        self.config = config
        self.stages = stages
        self.stage_names = stage_names
        self.channels = dict(zip(stage_names, stage_channels))  # each stage's output channels
        self.feature_dim = stage_channels[-1]

    def feature_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Every stage's output, by name (``stem``, ``layer1`` ... ``layer4`` for ResNet)."""
        out = {}
        for name, stage in zip(self.stage_names, self.stages):
            x = stage(x)
            out[name] = x
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages:
            x = stage(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def _resnet18(cfg: BackboneConfig) -> Backbone:
    net = models.resnet18(weights=None)
    if cfg.stem_stride:
        conv = nn.Conv2d(cfg.in_channels, 64, 3, cfg.stem_stride, 1, bias=False)
        stem = nn.Sequential(conv, net.bn1, net.relu)
    else:
        conv = nn.Conv2d(cfg.in_channels, 64, 7, 2, 3, bias=False)
        stem = nn.Sequential(conv, net.bn1, net.relu, net.maxpool)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    stages = nn.ModuleList([stem, net.layer1, net.layer2, net.layer3, net.layer4])
    return Backbone(cfg, stages, ["stem", "layer1", "layer2", "layer3", "layer4"], [64, 64, 128, 256, 512])


def _mobilenet_v3_small(cfg: BackboneConfig) -> Backbone:
    net = models.mobilenet_v3_small(weights=None)
    feats = net.features
    first = feats[0][0]
    stride = cfg.stem_stride or 2
    feats[0][0] = nn.Conv2d(cfg.in_channels, first.out_channels, 3, stride, 1, bias=False)
    nn.init.kaiming_normal_(feats[0][0].weight, mode="fan_out")
    # Group MobileNet's blocks at the resolutions where ResNet's layers sit.
    stages = nn.ModuleList([feats[0:1], feats[1:2], feats[2:4], feats[4:9], feats[9:]])
    return Backbone(cfg, stages, ["stem", "layer1", "layer2", "layer3", "layer4"],
                    [stage[-1].out_channels for stage in stages])


def build_backbone(config: BackboneConfig) -> Backbone:
    """A randomly initialised backbone for the given name, channels and input size."""
    return {"resnet18": _resnet18, "mobilenet_v3_small": _mobilenet_v3_small}[config.name](config)
