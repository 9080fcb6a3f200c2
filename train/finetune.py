"""``edgessl finetune``: a classifier on a pretrained backbone from a labelled fraction of the data.

The labelled set is a stratified, seeded fraction of the ``train`` split: from each class c with
n_c images, ``max(1, round(F * n_c))`` drawn at random. Two modes, both minimising the
cross-entropy ``L = -1/N * sum_i log softmax(W h_i + b)_{y_i}``:

* ``linear`` (linear probe): the backbone is frozen; h_i are its embeddings, computed once and
  standardised with the labelled set's mean and std (folded into W, b when saved);
* full fine-tuning: backbone and head train together on lightly augmented images (random
  resized crop of 60-100% of the area, flip, mild brightness/contrast jitter); BatchNorm
  statistics are then re-estimated on the labelled images (``precise_bn``).

The output run directory holds the (fine-tuned) backbone in the usual ``model.safetensors`` +
``model.json`` format, so ``evaluate``, ``fit`` and ``export`` load it, and the classifier in
``head.safetensors`` (``weight`` (K, D), ``bias`` (K)) applied to the pooled embedding. The summary
(``finetune_summary.json``, and ``model.json``'s ``finetune``) records the head's provenance: data,
label fraction, seed and ``labelled_set_sha256`` (``labelled_set_sha256``), which ``export`` copies
into the bundle.

Refused, one line each: train labels all of one class, a class with no training image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec

from .augment import AugmentConfig, augment
from .backbones import Backbone
from .checkpoint import load_model, save_model, save_tensors, write_json
from .config import FINETUNE_KINDS, FinetuneConfig
from .data import load_images, normalise
from .distributed import init_distributed, pick_device
from . import precision
from .features import embed_tensor
from .loop import LoopConfig, seed_everything, train
from .precise_bn import precise_bn
from .run_records import with_recorded_data

FINETUNE_AUGMENT = AugmentConfig(crop_scale=(0.6, 1.0), jitter_p=0.5, strength=0.2, grey_p=0.0)


def labelled_subset(labels: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Sorted indices of a stratified random ``fraction`` of ``labels`` (at least one per class)."""
    if not 0.0 < fraction <= 1.0:
        raise EdgesslError(f"--label-fraction must be in (0, 1], got {fraction}")
    rng = np.random.RandomState(seed)
    keep = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        k = max(1, int(round(fraction * len(members))))
        keep.append(rng.permutation(members)[:k])
    return np.sort(np.concatenate(keep))


def check_labels(labels: np.ndarray, class_names: list[str], source: str) -> None:
    """Refuse train labels a classifier cannot learn from: a class with no image, or a single class."""
    counts = np.bincount(labels, minlength=len(class_names))
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise EdgesslError(f"{source}: every training label is one class ({class_names[present[0]]!r}); a "
                           "classifier needs two or more")
    empty = [class_names[c] for c in np.flatnonzero(counts == 0)]
    if empty:
        raise EdgesslError(f"{source}: class {empty[0]!r} has no training image, so no labelled fraction can hold "
                           "one; drop the class or add images")


def labelled_set_sha256(indices: np.ndarray, labels: np.ndarray) -> str:
    """sha256 of the labelled set: its train-split indices then their labels, each as little-endian int64."""
    return hashlib.sha256(np.asarray(indices, "<i8").tobytes() + np.asarray(labels, "<i8").tobytes()).hexdigest()


class Classifier(nn.Module):
    """Backbone + linear head on augmented images: ``forward(images_uint8, labels) -> (loss, metrics)``."""

    def __init__(self, backbone: Backbone, spec: PreprocessSpec, num_classes: int):
        super().__init__()
        self.backbone, self.spec = backbone, spec
        self.head = nn.Linear(backbone.feature_dim, num_classes)

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        x = augment(images.float() * (1.0 / 255.0), FINETUNE_AUGMENT) * 255.0
        logits = self.head(self.backbone(normalise(x, self.spec)))
        return F.cross_entropy(logits, labels), {"acc": float((logits.argmax(1) == labels).float().mean())}


class LinearProbe(nn.Module):
    """A linear head on standardised frozen embeddings: ``forward(features, labels) -> (loss, metrics)``."""

    def __init__(self, features: torch.Tensor, num_classes: int):
        super().__init__()
        self.register_buffer("mean", features.mean(0))
        self.register_buffer("std", features.std(0).clamp_min(1e-6) if len(features) > 1 else torch.ones(features.shape[1]))
        self.head = nn.Linear(features.shape[1], num_classes)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        logits = self.head((features - self.mean) / self.std)
        return F.cross_entropy(logits, labels), {"acc": float((logits.argmax(1) == labels).float().mean())}

    def folded(self) -> nn.Linear:
        """The equivalent head on raw embeddings: ``W' = W / std``, ``b' = b - W' mean``."""
        out = nn.Linear(self.head.in_features, self.head.out_features)
        with torch.no_grad():
            out.weight.copy_(self.head.weight / self.std)
            out.bias.copy_(self.head.bias - out.weight @ self.mean)
        return out


@torch.no_grad()
def head_accuracy(backbone: Backbone, head: nn.Linear, ds: ImageDataset, spec: PreprocessSpec,
                  device: torch.device) -> float:
    """Accuracy of ``head(backbone(x))`` on every image of ``ds``."""
    emb = torch.from_numpy(embed_tensor(backbone, load_images(ds, spec), spec, device))
    pred = head.cpu()(emb).argmax(1).numpy()
    return float((pred == ds.labels).mean())


def load_head(run_dir: str | Path) -> tuple[nn.Linear, list[str]]:
    """The classifier of a fine-tuned run directory and its class names."""
    from safetensors.torch import load_file

    from .checkpoint import read_model_meta

    meta = read_model_meta(Path(run_dir))
    if "head" not in meta:
        raise EdgesslError(f"{run_dir}: has no classifier head (make one with `edgessl finetune`)")
    tensors = load_file(str(Path(run_dir) / meta["head"]["file"]))
    head = nn.Linear(tensors["weight"].shape[1], tensors["weight"].shape[0])
    head.load_state_dict(tensors)
    return head, list(meta["head"]["classes"])


def finetune(cfg: FinetuneConfig) -> dict:
    """Train the classifier described above; writes ``cfg.out`` and returns a summary."""
    cfg = with_recorded_data(cfg)
    out, source = Path(cfg.out), Path(cfg.run)
    if out.resolve() == source.resolve():
        raise EdgesslError("--out must be a new run directory, not the pretrained --run itself")
    backbone, spec, meta = load_model(source)
    device = pick_device(cfg.device)
    precision.select(cfg.torch_precision)
    dist = init_distributed(device)
    seed_everything(cfg.seed + dist.rank)
    train_ds, test_ds = open_dataset(cfg.data, "train"), open_dataset(cfg.data, "test")
    if not (train_ds.labelled and test_ds.labelled):
        raise EdgesslError(f"{cfg.data}: fine-tuning needs labelled train and test splits")
    check_labels(train_ds.labels, train_ds.class_names, cfg.data)
    chosen = labelled_subset(train_ds.labels, cfg.label_fraction, cfg.seed)
    labelled = train_ds.subset(chosen)
    num_classes = len(train_ds.class_names)
    images = load_images(labelled, spec, desc="reading")
    labels = torch.from_numpy(labelled.labels)
    batch = min(cfg.batch_size, len(labelled) // dist.world_size)
    kind = FINETUNE_KINDS["linear" if cfg.linear else "full"]
    lr, epochs = cfg.lr or kind.lr, cfg.epochs or kind.epochs
    loop_cfg = LoopConfig(epochs=epochs, batch_size=max(1, batch), lr=lr, weight_decay=cfg.weight_decay,
                          warmup_epochs=cfg.warmup_epochs, seed=cfg.seed, time_budget_s=cfg.time_budget,
                          max_steps=cfg.max_steps)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    if cfg.linear:
        backbone.requires_grad_(False)
        features = torch.from_numpy(embed_tensor(backbone, images, spec, device))
        model = LinearProbe(features, num_classes)
        summary = train(model, (features, labels), loop_cfg, out, device, dist, lambda epoch: None)
        head = model.folded()
    else:
        model = Classifier(backbone, spec, num_classes)
        summary = train(model, (images, labels), loop_cfg, out, device, dist, lambda epoch: None)
        precise_bn(backbone, images, spec, device)
        head = model.head
    backbone.eval()
    summary.update(mode="linear" if cfg.linear else "full", label_fraction=cfg.label_fraction, seed=cfg.seed,
                   data=cfg.data, labelled_images=len(labelled),
                   labelled_set_sha256=labelled_set_sha256(chosen, labelled.labels),
                   classes=train_ds.class_names, source_run=str(source),
                   test_accuracy=head_accuracy(backbone, head, test_ds, spec, device), out=str(out))
    if dist.is_main:
        save_model(out, backbone, spec, {"method": meta.get("method"), "data": cfg.data, "finetune": summary,
                                         "head": {"file": "head.safetensors", "classes": train_ds.class_names}})
        save_tensors(out / "head.safetensors", {"weight": head.weight, "bias": head.bias})
        write_json(out / "finetune_summary.json", summary)
    if dist.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
