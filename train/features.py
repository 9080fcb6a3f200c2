"""Feature extraction: a dataset through the exported network (frozen backbone), batched, on any device.

* ``embed_dataset`` / ``embed_tensor``: pooled embeddings ``(N, D)`` (evaluation, the linear probe);
* ``feature_batches``: the exported network's named outputs, one batch at a time;
* ``collect_outputs`` / ``bank_features``: every output of datasets in memory, and the rows a detector
  is fitted on (patch features sub-sampled for a memory bank).

Everything runs in the process's selected precision (``precision``: bf16 autocast where native);
outputs are always float32.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.preprocess import PreprocessSpec

from .backbones import Backbone
from .data import Images, load_images, normalise
from .feature_model import FeatureModel
from .precision import active

PATCH_POOL = 32_768  # most patch feature vectors the coreset chooses from (a random subset per image beyond)


@torch.no_grad()
def embed_tensor(backbone: Backbone, images: Images, spec: PreprocessSpec,
                 device: torch.device | str = "cpu", batch_size: int = 256) -> np.ndarray:
    """Pooled embeddings ``(N, D)`` float32 of uint8 images (a tensor or ``CachedImages``)."""
    compute = active(device)
    compute.module(backbone.eval())
    with compute.autocast():
        out = [backbone(normalise(compute.batch(images[i : i + batch_size]), spec)).float().cpu()
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
    compute = active(device)
    compute.module(model.eval())
    for i in tqdm(range(0, len(images), batch_size), desc=f"features {ds.split}", unit="batch",
                  leave=False, disable=len(images) <= 4 * batch_size):
        with compute.autocast():
            outs = model(normalise(compute.batch(images[i : i + batch_size]), spec))
        yield {name: o.float().cpu().numpy() for name, o in zip(model.output_names, outs)}


def feature_model_for(backbone: Backbone, detector_inputs: tuple[str, ...]) -> FeatureModel:
    """The exported network with the outputs a detector consumes."""
    return FeatureModel(backbone, with_patches="patches" in detector_inputs)


def collect_outputs(model: FeatureModel, datasets: list[ImageDataset], spec: PreprocessSpec, device,
                    batch_size: int) -> dict[str, np.ndarray]:
    """Every named output of the model for every image of ``datasets``, concatenated in order
    (``embedding`` ``(N, D)``, ``patches`` ``(N, C, h, w)``)."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in model.output_names}
    for ds in datasets:
        for batch in feature_batches(model, ds, spec, device, batch_size):
            for name, value in batch.items():
                out[name].append(value)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def bank_features(outputs: dict[str, np.ndarray], patch_pool: int = PATCH_POOL, seed: int = 0) -> dict[str, np.ndarray]:
    """What a detector is fitted on, from ``collect_outputs`` of normal images: ``embedding`` as is and
    ``patches`` as rows ``(P, C)``, ``m = min(h * w, max(1, patch_pool // N))`` random locations per
    image (all of them when they fit in ``patch_pool``)."""
    out = {"embedding": outputs["embedding"]}
    if "patches" in outputs:
        p = outputs["patches"]
        flat = p.transpose(0, 2, 3, 1).reshape(len(p), -1, p.shape[1])  # (N, h*w, C)
        per_image = max(1, patch_pool // max(1, len(p)))
        if flat.shape[1] > per_image:
            rng = np.random.default_rng(seed)
            keep = np.stack([rng.choice(flat.shape[1], per_image, replace=False) for _ in range(len(p))])
            flat = np.take_along_axis(flat, keep[:, :, None], axis=1)
        out["patches"] = flat.reshape(-1, p.shape[1])
    return out
