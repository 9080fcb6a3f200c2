"""Torch views of the runtime's datasets: images go through the runtime's own ``resize_image``
once, are held as uint8, and are normalised on the fly with the spec's mean/std.

``load_images`` holds a small set in memory (one uint8 tensor) and a large one in the on-disk
cache (``edge_runtime.data.cache``), read a batch at a time, so memory does not grow with the
data: "large" is more than ``IN_MEMORY_LIMIT_MB`` MiB of resized images (``$EDGESSL_IN_MEMORY_MB``
overrides it; 0 always uses the cache). Both index like a tensor (``x[idx]``, ``x[a:b]``, ``len``).

Normalising here equals ``edge_runtime.preprocess.preprocess`` to float rounding (a test checks it).
"""

from __future__ import annotations

import os
from typing import Iterator, Union

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.data.cache import UInt8Store, build_store
from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec, resize_image

from .config import AUTO_SIZE


IN_MEMORY_LIMIT_MB = 512


def _chw_rows(ds: ImageDataset, spec: PreprocessSpec, desc: str) -> Iterator[np.ndarray]:
    for i in tqdm(range(len(ds)), desc=f"{desc} {ds.split}", unit="img", leave=False, disable=len(ds) < 2000):
        img = resize_image(ds.image(i), spec)
        yield img[None] if img.ndim == 2 else img.transpose(2, 0, 1)


def load_uint8(ds: ImageDataset, spec: PreprocessSpec, desc: str = "loading") -> torch.Tensor:
    """All images of ``ds`` resized to the spec, in memory: a ``N x C x H x W`` uint8 tensor."""
    out = np.empty((len(ds), spec.channels, spec.image_size, spec.image_size), np.uint8)
    for i, row in enumerate(_chw_rows(ds, spec, desc)):
        out[i] = row
    return torch.from_numpy(out)


class CachedImages:
    """``N x C x H x W`` uint8 images in the on-disk cache; indexing reads those rows into a new tensor."""

    def __init__(self, store: UInt8Store):
        self.store = store
        self.shape = torch.Size(store.shape)

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            rows = np.arange(len(self))[idx]
        else:
            rows = idx.numpy() if isinstance(idx, torch.Tensor) else np.asarray(idx)
        return torch.from_numpy(self.store.read(rows))


Images = Union[torch.Tensor, CachedImages]


def in_memory_limit_bytes() -> int:
    return int(float(os.environ.get("EDGESSL_IN_MEMORY_MB", IN_MEMORY_LIMIT_MB)) * 2**20)


def load_images(ds: ImageDataset, spec: PreprocessSpec, desc: str = "loading") -> Images:
    """``ds`` resized to the spec: in memory when small, else from the on-disk cache (built once)."""
    shape = (len(ds), spec.channels, spec.image_size, spec.image_size)
    if int(np.prod(shape)) <= in_memory_limit_bytes():
        return load_uint8(ds, spec, desc)
    geometry = {"size": spec.image_size, "channels": spec.channels, "resize": spec.resize}
    key = {"images": ds.identity(), "geometry": geometry}
    return CachedImages(build_store(key, shape, lambda: _chw_rows(ds, spec, f"caching ({desc})")))


def normalise(x: torch.Tensor, spec: PreprocessSpec) -> torch.Tensor:
    """uint8 (or [0,255] float) batch to the model's float input: ``(x/255 - mean) / std``."""
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    inv_std = 1.0 / torch.tensor(spec.std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    return (x.float() * (1.0 / 255.0) - mean) * inv_std


def channel_stats(x: Images, max_images: int = 4096, chunk: int = 64) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (sample) std in [0,1] units of up to ``max_images`` evenly spaced
    images of a uint8 batch: float32 sums per chunk of ``chunk`` images, added in float64, so the
    memory used is one chunk's whatever the data's size."""
    idx = torch.linspace(0, len(x) - 1, min(len(x), max_images)).long()
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    sq = torch.zeros_like(total)
    for i in range(0, len(idx), chunk):
        v = x[idx[i : i + chunk]].float().div_(255.0)
        total += v.sum(dim=(0, 2, 3)).double()
        sq += v.square_().sum(dim=(0, 2, 3)).double()
    count = len(idx) * x.shape[2] * x.shape[3]
    mean = total / count
    std = ((sq - count * mean.square()) / max(count - 1, 1)).clamp_min(0).sqrt().clamp_min(1e-3)
    return tuple(round(float(m), 6) for m in mean), tuple(round(float(s), 6) for s in std)


def infer_channels(ds: ImageDataset) -> int:
    """1 when the data's first images are grey, else 3."""
    probe = [ds.image(i) for i in range(min(len(ds), 8))]
    if not probe:
        raise EdgesslError(f"{ds.source}: no images")
    return 3 if any(img.ndim == 3 for img in probe) else 1


def infer_image_size(ds: ImageDataset, probes: int = 32) -> int:
    """The data's own size for the model input: the median shorter side of up to ``probes`` images
    spread over ``ds``, within ``AUTO_SIZE`` (smaller images are enlarged to the first; a cap keeps
    training cost bounded: the stem strides more as the size grows, ``backbones``)."""
    if len(ds) == 0:
        raise EdgesslError(f"{ds.source}: no images")
    idx = np.unique(np.linspace(0, len(ds) - 1, min(len(ds), probes)).round().astype(int))
    side = float(np.median([min(ds.image(int(i)).shape[:2]) for i in idx]))
    return int(min(max(side, AUTO_SIZE[0]), AUTO_SIZE[1]))


def select(ds: ImageDataset, labels: list[int] | None) -> ImageDataset:
    """The images of ``ds`` whose label is in ``labels`` (all when ``labels`` is None)."""
    if labels is None:
        return ds
    keep = np.flatnonzero(np.isin(ds.labels, labels))
    return ds.subset(keep)
