"""What every pretext task shares: a backbone, the input normalisation, and the loop's contract.

The training loop calls ``loss, metrics = method(batch_uint8)`` (through DistributedDataParallel
when distributed), back-propagates ``loss`` through one optimizer (over ``method.param_groups()``), then
``method.on_step_end``.
A method whose parts must not share gradients (the GAN) routes them inside ``forward``.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn

from edgessl.edge_runtime.preprocess import PreprocessSpec

from ..augment import AugmentConfig, augment
from ..backbones import Backbone
from ..data import normalise


def mlp(dims: list[int], last_bn: bool = False) -> nn.Sequential:
    """Linear-BN-ReLU blocks between ``dims``; the last layer is linear (optionally BN'd)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        last = i == len(dims) - 2
        layers.append(nn.Linear(a, b, bias=last and not last_bn))
        if not last:
            layers += [nn.BatchNorm1d(b), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(b, affine=False))
    return nn.Sequential(*layers)


class PretextMethod(nn.Module):
    """Base class: subclasses set ``name`` and implement ``forward(batch) -> (loss, metrics)``."""

    name: ClassVar[str] = ""

    def __init__(self, backbone: Backbone, spec: PreprocessSpec, augment_config: AugmentConfig | None = None):
        super().__init__()
        self.backbone = backbone
        self.spec = spec
        self.augment_config = augment_config or AugmentConfig()

    def inputs(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 batch to the normalised float model input."""
        return normalise(batch, self.spec)

    def views(self, batch: torch.Tensor, n: int = 2) -> list[torch.Tensor]:
        """``n`` independently augmented, normalised views of a uint8 batch."""
        x = batch.float() * (1.0 / 255.0)
        return [normalise(augment(x, self.augment_config) * 255.0, self.spec) for _ in range(n)]

    @classmethod
    def for_data(cls, backbone: Backbone, spec: PreprocessSpec, num_images: int,
                 augment_config: AugmentConfig | None = None) -> "PretextMethod":
        """The method with its defaults and these views, for a training set of ``num_images`` (MoCo
        sizes its queue by it)."""
        return cls(backbone, spec, augment_config)

    def param_groups(self) -> list[dict]:
        """Optimizer parameter groups; a group's ``lr_scale`` multiplies the scheduled learning rate."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        """Called after each optimizer step with training progress in [0, 1] (EMA updates)."""
