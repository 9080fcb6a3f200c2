"""Precise BatchNorm statistics (Wu & Johnson, 2021): re-estimate a network's running statistics
with its final weights before it is saved.

During training the running mean and variance are exponential averages over batches seen with
*earlier* weights (momentum 0.1), which lags badly in short runs (a few dozen steps). Here they
are reset and recomputed as the plain average over batches of up to ``max_images`` training
images, in train mode: mu = 1/B * sum_b mean_b,  sigma^2 = 1/B * sum_b var_b.
Only buffers change; the weights and the training itself are untouched.
"""

from __future__ import annotations

import torch
from torch import nn

from edgessl.edge_runtime.preprocess import PreprocessSpec

from .data import normalise


@torch.no_grad()
def precise_bn(net: nn.Module, images: torch.Tensor, spec: PreprocessSpec, device: torch.device,
               max_images: int = 1024, batch_size: int = 128, seed: int = 0) -> None:
    """Recompute the BatchNorm running statistics of ``net`` on a seeded sample of uint8 ``images``."""
    norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not norms or len(images) == 0:
        return
    momenta = [m.momentum for m in norms]
    was_training = net.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    net.train()
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:max_images]
    for i in range(0, len(idx), batch_size):
        net(normalise(images[idx[i : i + batch_size]].to(device), spec))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    net.train(was_training)
