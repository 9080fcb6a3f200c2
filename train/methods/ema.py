"""Exponential-moving-average ("momentum") networks, shared by BYOL and MoCo.

With online parameters theta and target parameters xi, after every optimizer step

    xi <- m * xi + (1 - m) * theta,      m(progress) = 1 - (1 - m0) * (cos(pi * progress) + 1) / 2,

so the momentum rises from ``m0`` at the start of training to 1 at the end (BYOL's schedule).
Buffers (BatchNorm statistics) are copied from the online network.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


def cosine_momentum(base: float, progress: float) -> float:
    """``m(progress)`` above, for ``progress`` in [0, 1]."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * min(max(progress, 0.0), 1.0)) + 1.0) / 2.0


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters take no gradient (and so stay out of the optimizer)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def ema_update(online: list[nn.Module], target: list[nn.Module], momentum: float) -> None:
    """``target <- momentum * target + (1 - momentum) * online``, module by module."""
    for src, dst in zip(online, target):
        dst_params = list(dst.parameters())
        src_params = [p.detach() for p in src.parameters()]
        torch._foreach_mul_(dst_params, momentum)
        torch._foreach_add_(dst_params, src_params, alpha=1.0 - momentum)
        for b_dst, b_src in zip(dst.buffers(), src.buffers()):
            b_dst.copy_(b_src)
