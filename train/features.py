"""Embeddings (and the exported network's other outputs) of a dataset through a frozen backbone, batched, on any device,
in the process's selected precision (``precision``: bf16 autocast where native; outputs always float32)."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.data.datasets import ImageDataset
from edgessl.edge_runtime.preprocess import PreprocessSpec

from .backbones import Backbone
from .data import load_uint8, normalise
from .feature_model import FeatureModel
from .precision import active


@torch.no_grad()
def embed_tensor(backbone: Backbone, images: torch.Tensor, spec: PreprocessSpec,
                 device: torch.device | str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Pooled embeddings ``(N, D)`` float32 of a uint8 image tensor."""
    compute = active(device)
    compute.module(backbone.eval())
    with compute.autocast():
        out = [backbone(normalise(compute.batch(images[i : i + batch_size]), spec)).float().cpu()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros((0, backbone.feature_dim), np.float32)


def embed_dataset(backbone: Backbone, ds: ImageDataset, spec: PreprocessSpec,
                  device: torch.device | str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Pooled embeddings of every image of ``ds``, preprocessed exactly as the runtime does."""
    return embed_tensor(backbone, load_uint8(ds, spec), spec, device, batch_size)


@torch.no_grad()
def feature_batches(model: FeatureModel, ds: ImageDataset, spec: PreprocessSpec,
                    device: torch.device | str = "cpu", batch_size: int = 256) -> Iterator[dict[str, np.ndarray]]:
    """The exported network's named outputs (float32 numpy), one batch of ``ds`` at a time, in order."""
    images = load_uint8(ds, spec)
    compute = active(device)
    compute.module(model.eval())
    for i in tqdm(range(0, len(images), batch_size), desc=f"features {ds.split}", unit="batch",
                  leave=False, disable=len(images) <= 4 * batch_size):
        with compute.autocast():
            outs = model(normalise(compute.batch(images[i : i + batch_size]), spec))
        yield {name: o.float().cpu().numpy() for name, o in zip(model.output_names, outs)}
