"""Torch views of the runtime's datasets: images go through the runtime's own ``resize_image``
once, are held as a uint8 tensor, and are normalised on the fly with the spec's mean/std.

Normalising here equals ``edge_runtime.preprocess.preprocess`` to float rounding (a test checks it).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.data.datasets import ImageDataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec, resize_image


def load_uint8(ds: ImageDataset, spec: PreprocessSpec, desc: str = "loading") -> torch.Tensor:
    """All images of ``ds`` resized to the spec: a ``N x C x H x W`` uint8 tensor."""
    out = np.empty((len(ds), spec.channels, spec.image_size, spec.image_size), np.uint8)
    for i in tqdm(range(len(ds)), desc=f"{desc} {ds.split}", unit="img", leave=False, disable=len(ds) < 2000):
        img = resize_image(ds.image(i), spec)
        out[i] = img[None] if img.ndim == 2 else img.transpose(2, 0, 1)
    return torch.from_numpy(out)


def normalise(x: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (or [0,255] float) batch to the model's float input: ``(x/255 - mean) / std``."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() * (1.0 / 255.0) - mean) * inv_std


def channel_stats(x: torch.Tensor, max_images: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std in [0,1] units of (up to ``max_images`` of) a uint8 batch."""
    idx = torch.linspace(0, len(x) - 1, min(len(x), max_images)).long()
    v = x[idx].float().div_(255.0)
    mean = v.mean(dim=(0, 2, 3))
    std = v.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def infer_channels(ds: ImageDataset) -> int:
    """1 when the data's first images are grey, else 3."""
    probe = [ds.image(i) for i in range(min(len(ds), 8))]
    if not probe:
        raise EdgesslError(f"{ds.source}: no images")
    return 3 if any(img.ndim == 3 for img in probe) else 1


def select(ds: ImageDataset, labels: list[int] | None) -> ImageDataset:
    """The images of ``ds`` whose label is in ``labels`` (all when ``labels`` is None)."""
    if labels is None:
        return ds
    keep = np.flatnonzero(np.isin(ds.labels, labels))
    return ds.subset(keep)
