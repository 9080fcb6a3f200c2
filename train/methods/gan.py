"""A DCGAN (Radford et al., 2016) whose discriminator's trunk is the backbone being pretrained.

Generator G: z ~ N(0, I) (``latent_dim``) -> linear to 4x4 maps -> (transposed conv 4/2, BN,
ReLU) until at least ``image_size`` -> 3x3 conv, tanh; resized to ``image_size`` when that is not
4 * 2^n. Its output in [-1, 1] is mapped to pixels (g + 1) / 2 and normalised like real images.
Discriminator D(x) = sigmoid(w . f(x) + b), f the backbone. The game

    min_G max_D  E_x log D(x) + E_z log(1 - D(G(z)))

is played with the non-saturating generator loss, in one backward pass:

    L_D = -log D(x) - log(1 - D(sg[G(z)])),         (gradients reach only D)
    L_G = -log D_sg(G(z)),                           (gradients reach only G)
    L   = L_D + L_G,

where sg stops gradients and D_sg is D evaluated with detached parameters and copies of its
buffers (``torch.func.functional_call``), so the one optimizer step moves D by dL_D and G by dL_G.
Both use Adam with beta1 = 0.5 at ``lr_scale`` times the run's learning rate, as DCGAN does.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from ..data import normalise
from .base import PretextMethod


class Generator(nn.Module):
    """DCGAN generator: ``(B, latent_dim)`` noise to ``(B, C, S, S)`` images in [-1, 1]."""

    def __init__(self, latent_dim: int, channels: int, image_size: int, width: int = 64):
        super().__init__()
        ups = max(0, math.ceil(math.log2(image_size / 4)))
        widths = [width * 2 ** min(ups - i, 3) for i in range(ups + 1)]
        self.image_size = image_size
        self.project = nn.Sequential(nn.Linear(latent_dim, widths[0] * 16, bias=False),
                                     nn.Unflatten(1, (widths[0], 4, 4)), nn.BatchNorm2d(widths[0]), nn.ReLU(True))
        blocks: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Conv2d(widths[-1], channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.out(self.blocks(self.project(z)))
        if x.shape[-1] != self.image_size:
            x = F.interpolate(x, size=self.image_size, mode="bilinear", align_corners=False, antialias=True)
        return torch.tanh(x)


def _frozen_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Detached parameters and copies of the buffers (their in-place BN updates are dropped)."""
    state = {k: v.detach() for k, v in module.named_parameters()}
    state.update({k: v.clone() for k, v in module.named_buffers()})
    return state


class GAN(PretextMethod):
    name = "gan"

    def __init__(self, backbone, spec, augment_config=None, latent_dim: int = 64, lr_scale: float = 0.2):
        super().__init__(backbone, spec, augment_config)
        self.latent_dim = latent_dim
        self.lr_scale = lr_scale
        self.head = nn.Linear(backbone.feature_dim, 1)  # D(x) = sigmoid(head(backbone(x)))
        self.generator = Generator(latent_dim, spec.channels, spec.image_size)

    def param_groups(self) -> list[dict]:
        adam = {"betas": (0.5, 0.999), "weight_decay": 0.0, "lr_scale": self.lr_scale}
        return [{"params": [*self.backbone.parameters(), *self.head.parameters()], **adam},
                {"params": list(self.generator.parameters()), **adam}]

    def fake(self, n: int, device: torch.device) -> torch.Tensor:
        """``n`` generated images, normalised like real model inputs."""
        g = self.generator(torch.randn(n, self.latent_dim, device=device))
        return normalise((g + 1.0) * 127.5, self.spec)

    def discriminate(self, x: torch.Tensor) -> torch.Tensor:
        """D's logit for each image of a normalised batch."""
        return self.head(self.backbone(x)).squeeze(1)

    def discriminate_frozen(self, x: torch.Tensor) -> torch.Tensor:
        """D's logit with D's parameters detached: gradients reach only ``x``."""
        emb = functional_call(self.backbone, _frozen_state(self.backbone), (x,))
        return F.linear(emb, self.head.weight.detach(), self.head.bias.detach()).squeeze(1)

    def losses(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, dict[str, float]]:
        """``(L_D, L_G, metrics)`` for a uint8 batch of real images."""
        real = self.inputs(batch)
        fake = self.fake(len(real), real.device)
        d_real = self.discriminate(real)
        d_fake = self.discriminate(fake.detach())
        ones, zeros = torch.ones_like(d_real), torch.zeros_like(d_real)
        loss_d = F.binary_cross_entropy_with_logits(d_real, ones) + F.binary_cross_entropy_with_logits(d_fake, zeros)
        d_gen = self.discriminate_frozen(fake)
        loss_g = F.binary_cross_entropy_with_logits(d_gen, ones)
        metrics = {"loss_d": float(loss_d.detach()), "loss_g": float(loss_g.detach()),
                   "d_real": float(torch.sigmoid(d_real.detach()).mean()),
                   "d_fake": float(torch.sigmoid(d_fake.detach()).mean())}
        return loss_d, loss_g, metrics

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        loss_d, loss_g, metrics = self.losses(batch)
        return loss_d + loss_g, metrics
