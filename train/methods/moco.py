"""MoCo v2 (Chen et al., 2020): a momentum key encoder and a queue of negative keys.

Query encoder: backbone f and MLP projector g; key encoder: EMA copies f', g' (``ema.py``,
momentum from ``base_momentum`` to 1). For two augmented views v1, v2 of each image, with unit
vectors q_i = g(f(v1_i)) and k_i = g'(f'(v2_i)) (no gradient) and the queue {n_j} of the
last K keys,

    L = -1/N * sum_i log( exp(q_i . k_i / tau) / (exp(q_i . k_i / tau) + sum_j exp(q_i . n_j / tau)) ),

the InfoNCE loss with temperature tau = 0.2. After each step (``on_step_end``) the keys of its
last forward pass (gathered from every process under DDP) replace the oldest keys of the queue,
so a step the loop computes again (``loop.train_step``) adds its keys once. The queue is capped at the
number of training images, so on a small set it holds at most about one epoch of keys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..augment import AugmentConfig
from ..distributed import all_gather_cat
from .base import PretextMethod, mlp
from .ema import cosine_momentum, ema_update, frozen_copy


class MoCo(PretextMethod):
    name = "moco"

    def __init__(self, backbone, spec, augment_config=None, queue_size: int = 4096, temperature: float = 0.2,
                 base_momentum: float = 0.99, proj_dim: int = 128):
        super().__init__(backbone, spec, augment_config)
        self.temperature = temperature
        self.base_momentum = base_momentum
        self.momentum = base_momentum
        d = backbone.feature_dim
        self.projector = mlp([d, d, proj_dim])
        self.key_backbone = frozen_copy(backbone)
        self.key_projector = frozen_copy(self.projector)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, proj_dim), dim=1))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self._pending: torch.Tensor | None = None  # the last forward's keys, queued at the step's end

    @classmethod
    def for_data(cls, backbone, spec, num_images: int, augment_config: AugmentConfig | None = None) -> "MoCo":
        return cls(backbone, spec, augment_config, queue_size=max(1, min(4096, num_images)))

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        v1, v2 = self.views(batch)
        q = F.normalize(self.projector(self.backbone(v1)), dim=1)
        with torch.no_grad():
            k = F.normalize(self.key_projector(self.key_backbone(v2)), dim=1)
        l_pos = (q * k).sum(1, keepdim=True)
        l_neg = q @ self.queue.clone().t()
        logits = torch.cat([l_pos, l_neg], dim=1) / self.temperature
        target = torch.zeros(len(q), dtype=torch.long, device=q.device)
        loss = F.cross_entropy(logits, target)
        acc = (logits.argmax(1) == 0).float().mean()
        self._pending = all_gather_cat(k.float())
        return loss, {"acc": float(acc)}

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = len(self.queue)
        keys = keys[-size:]
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % size)

    @torch.no_grad()
    def on_step_end(self, progress: float) -> None:
        if self._pending is not None:
            self._enqueue(self._pending)
            self._pending = None
        self.momentum = cosine_momentum(self.base_momentum, progress)
        ema_update([self.backbone, self.projector], [self.key_backbone, self.key_projector], self.momentum)
