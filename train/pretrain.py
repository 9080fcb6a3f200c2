"""``edgessl pretrain``: self-supervised pretraining of a backbone on unlabelled images."""

from __future__ import annotations

from pathlib import Path

import torch

from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec

from . import precision
from .augment import AugmentConfig
from .backbones import BackboneConfig, build_backbone
from .checkpoint import save_model, write_json
from .config import PRETRAIN_STEPS, PretrainConfig
from .data import channel_stats, infer_channels, infer_image_size, load_images
from .distributed import init_distributed, pick_device
from .init_weights import load_init_weights
from .loop import LoopConfig, saved_budget, seed_everything, train
from .methods import METHODS
from .precise_bn import precise_bn


def schedule(cfg: PretrainConfig) -> dict:
    """What ends training, as ``LoopConfig``'s ``epochs``, ``max_steps`` and ``time_budget_s``: the
    budget given; with none, on ``--resume`` the run's own (its checkpoint keeps it, so the schedule
    continues), else ``PRETRAIN_STEPS`` steps (one epoch of a small set is not a trained backbone;
    a budget in steps means the same on every host)."""
    if cfg.epochs or cfg.time_budget or cfg.max_steps:
        return {"epochs": cfg.epochs, "max_steps": cfg.max_steps, "time_budget_s": cfg.time_budget}
    recorded = saved_budget(Path(cfg.out)) if cfg.resume else None
    return recorded or {"epochs": 0, "max_steps": PRETRAIN_STEPS, "time_budget_s": 0.0}


def loop_config(cfg: PretrainConfig) -> LoopConfig:
    """The training loop's settings for ``cfg``, its budget resolved by ``schedule``."""
    return LoopConfig(batch_size=cfg.batch_size, lr=cfg.lr, weight_decay=cfg.weight_decay,
                      warmup_epochs=cfg.warmup_epochs, seed=cfg.seed, **schedule(cfg))


def pretrain(cfg: PretrainConfig) -> dict:
    """Train ``cfg.method`` on the ``train`` split of ``cfg.data``; returns the run summary."""
    if cfg.method not in METHODS:
        raise EdgesslError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    device = pick_device(cfg.device)
    precision.select(cfg.torch_precision)
    dist = init_distributed(device)
    seed_everything(cfg.seed + dist.rank)
    out = Path(cfg.out)
    if not 0 < cfg.crop_min <= 1:
        raise EdgesslError(f"--crop-min {cfg.crop_min:g} is not an area fraction; give one in (0, 1]")
    if cfg.resume and not (out / "state.json").is_file():
        raise EdgesslError(f"{out}: nothing to resume from (no state.json)")

    ds = open_dataset(cfg.data, "train")
    if cfg.max_images:
        ds = ds.subset(torch.arange(min(cfg.max_images, len(ds))).numpy())
    channels = cfg.channels or infer_channels(ds)
    size = cfg.image_size or infer_image_size(ds)
    backbone_cfg = BackboneConfig(cfg.backbone, channels, size, cfg.stem_stride)
    geometry = PreprocessSpec(size, channels, (0.5,) * channels, (0.25,) * channels)
    images = load_images(ds, geometry, desc="reading")
    mean, std = channel_stats(images)
    spec = PreprocessSpec(size, channels, mean, std)

    backbone = build_backbone(backbone_cfg)
    if cfg.init_weights:
        load_init_weights(backbone, cfg.init_weights)
    method = METHODS[cfg.method].for_data(backbone, spec, len(images), AugmentConfig(crop_scale=(cfg.crop_min, 1.0)))
    loop_cfg = loop_config(cfg)

    def checkpoint(epoch: int) -> None:
        precise_bn(backbone, images, spec, device)
        save_model(out, backbone, spec, {"method": cfg.method, "epochs_done": epoch, "data": cfg.data})

    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    summary = train(method, images, loop_cfg, out, device, dist, checkpoint, resume=cfg.resume)
    summary.update(method=cfg.method, backbone=cfg.backbone, image_size=size,
                   images=len(ds), device=str(device), world_size=dist.world_size, out=str(out),
                   data_report=ds.report.to_dict() if ds.report is not None else None)
    if dist.is_main:
        write_json(out / "pretrain_summary.json", summary)
    if dist.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
