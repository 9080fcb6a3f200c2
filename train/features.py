"""Embeddings (and the exported network's other outputs) of a dataset through a frozen backbone, batched, on any device."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.data.datasets import ImageDataset
from edgessl.edge_runtime.preprocess import PreprocessSpec

from .backbones import Backbone
from .data import Images, load_images, normalise
from .feature_model import FeatureModel


@torch.no_grad()
def embed_tensor(backbone: Backbone, images: Images, spec: PreprocessSpec,
                 device: torch.device | str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Pooled embeddings ``(N, D)`` float32 of uint8 images (a tensor or ``CachedImages``)."""
    backbone.eval().to(device)
    out = [backbone(normalise(images[i : i + batch_size].to(device), spec)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, backbone.feature_dim), np.float32)


def embed_dataset(backbone: Backbone, ds: ImageDataset, spec: PreprocessSpec,
                  device: torch.device | str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Pooled embeddings of every image of ``ds``, preprocessed exactly as the runtime does."""
    return embed_tensor(backbone, load_images(ds, spec), spec, device, batch_size)


@torch.no_grad()
def feature_batches(model: FeatureModel, ds: ImageDataset, spec: PreprocessSpec,
                    device: torch.device | str = "cpu", batch_size: int = 256) -> Iterator[dict[str, np.ndarray]]:
    """The exported network's named outputs (float32 numpy), one batch of ``ds`` at a time, in order."""
    images = load_images(ds, spec)
    model.eval().to(device)
    for i in tqdm(range(0, len(images), batch_size), desc=f"features {ds.split}", unit="batch",
                  leave=False, disable=len(images) <= 4 * batch_size):
        outs = model(normalise(images[i : i + batch_size].to(device), spec))
        yield {name: o.float().cpu().numpy() for name, o in zip(model.output_names, outs)}
