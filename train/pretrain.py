"""``edgessl pretrain``: self-supervised pretraining of a backbone on unlabelled images."""

from __future__ import annotations

from pathlib import Path

import torch

from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec

from .backbones import BackboneConfig, build_backbone
from .checkpoint import save_model, write_json
from .config import PretrainConfig
from .data import channel_stats, infer_channels, load_uint8
from .distributed import init_distributed, pick_device
from .loop import LoopConfig, seed_everything, train
from .methods import METHODS
from .precise_bn import precise_bn


def pretrain(cfg: PretrainConfig) -> dict:
    """Train ``cfg.method`` on the ``train`` split of ``cfg.data``; returns the run summary."""
    if cfg.method not in METHODS:
        raise EdgesslError(f"unknown method {cfg.method!r}; choose one of {', '.join(METHODS)}")
    device = pick_device(cfg.device)
    dist = init_distributed(device)
    seed_everything(cfg.seed + dist.rank)
    out = Path(cfg.out)
    if cfg.resume and not (out / "state.json").is_file():
        raise EdgesslError(f"{out}: nothing to resume from (no state.json)")

    ds = open_dataset(cfg.data, "train")
    if cfg.max_images:
        ds = ds.subset(torch.arange(min(cfg.max_images, len(ds))).numpy())
    channels = cfg.channels or infer_channels(ds)
    backbone_cfg = BackboneConfig(cfg.backbone, channels, cfg.image_size)
    geometry = PreprocessSpec(cfg.image_size, channels, (0.5,) * channels, (0.25,) * channels)
    images = load_uint8(ds, geometry, desc="reading")
    mean, std = channel_stats(images)
    spec = PreprocessSpec(cfg.image_size, channels, mean, std)

    backbone = build_backbone(backbone_cfg)
    method = METHODS[cfg.method].for_data(backbone, spec, len(images))
    loop_cfg = LoopConfig(cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.warmup_epochs,
                          cfg.seed, cfg.time_budget, cfg.max_steps)

    def checkpoint(epoch: int) -> None:
        precise_bn(backbone, images, spec, device)
        save_model(out, backbone, spec, {"method": cfg.method, "epochs_done": epoch, "data": cfg.data})

    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
    summary = train(method, images, loop_cfg, out, device, dist, checkpoint, resume=cfg.resume)
    summary.update(method=cfg.method, backbone=cfg.backbone, image_size=cfg.image_size,
                   images=len(ds), device=str(device), world_size=dist.world_size, out=str(out))
    if dist.is_main:
        write_json(out / "pretrain_summary.json", summary)
    if dist.enabled:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return summary
