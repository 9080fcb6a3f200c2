"""The one training loop every pretext task shares, readable top to bottom.

Per step: take a shuffled mini-batch (each ``torchrun`` process its own share), ``loss = method(batch)``
under autocast (bf16 where the hardware has it natively: ``precision``), back-propagate, clip, step, update the learning rate
(linear warm-up, then cosine decay to 0 at the last step or, with ``--time-budget``, at the end of
the budget, whichever is first), ``method.on_step_end``. Logs go to a progress bar,
``metrics.csv`` and TensorBoard; checkpoints (safetensors + JSON) are written every epoch and
at the end, and a run resumes from its last one.
"""

from __future__ import annotations

import csv
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.errors import EdgesslError

from .checkpoint import optimizer_tensors, restore_optimizers, save_tensors, write_json
from .distributed import DistInfo
from .precision import active


@dataclass
class LoopConfig:
    epochs: int = 1
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 0.5
    seed: int = 0
    time_budget_s: float = 0.0  # stop after this much wall time (0: no limit)
    max_steps: int = 0  # stop after this many steps (0: no limit)
    grad_clip: float = 5.0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int, time_progress: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then half-cosine from 1 to 0 at ``total`` steps or, with a
    time budget, when ``time_progress`` (elapsed / budget) reaches 1, whichever comes first."""
    if step < warmup:
        return (step + 1) / warmup
    progress = max((step - warmup) / max(1, total - warmup), time_progress)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _batches(n: int, batch_size: int, epoch: int, seed: int, dist: DistInfo) -> list[torch.Tensor]:
    """This process's mini-batches of one epoch: a shared permutation, strided by rank."""
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(n, generator=g)
    per_step = batch_size * dist.world_size
    steps = n // per_step
    return [order[s * per_step + dist.rank : (s + 1) * per_step : dist.world_size] for s in range(steps)]


def steps_per_epoch(n: int, batch_size: int, dist: DistInfo) -> int:
    steps = n // (batch_size * dist.world_size)
    if steps == 0:
        raise EdgesslError(
            f"{n} training images are fewer than one batch ({batch_size} x {dist.world_size} processes); "
            "lower --batch-size")
    return steps


def train(
    method: torch.nn.Module,
    data: torch.Tensor | tuple[torch.Tensor, ...],
    cfg: LoopConfig,
    run_dir: Path,
    device: torch.device,
    dist: DistInfo,
    on_checkpoint: Callable[[int], None],
    resume: bool = False,
) -> dict:
    """Train ``method`` on the uint8 image tensor ``data``; returns a summary of the run.

    ``data`` may also be a tuple of tensors of equal length (images, labels): each step then calls
    ``method(*batch)``. ``method`` may define ``param_groups()`` (a group's ``lr_scale`` scales
    the scheduled learning rate) and ``on_step_end(progress)``.

    ``on_checkpoint(epoch)`` is called on the main process to write the model files.
    """
    cuda = device.type == "cuda"
    compute = active(device)
    compute.module(method)
    groups = method.param_groups() if hasattr(method, "param_groups") else \
        [{"params": [p for p in method.parameters() if p.requires_grad]}]
    params = [p for g in groups for p in g["params"]]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model = method
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(method, device_ids=[device.index] if cuda else None)

    tensors = data if isinstance(data, tuple) else (data,)
    n = len(tensors[0])
    per_epoch = steps_per_epoch(n, cfg.batch_size, dist)
    total = per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps)
    warmup = max(1, int(cfg.warmup_epochs * per_epoch))
    start_epoch, step = 0, 0
    if resume:
        start_epoch, step = _resume(method, optimizer, run_dir)

    writer = _tensorboard(run_dir) if dist.is_main else None
    log = _CsvLog(run_dir / "metrics.csv", append=resume) if dist.is_main else None
    started = time.perf_counter()
    seen, stopped_early, last = 0, False, {}
    method.train()
    for epoch in range(start_epoch, cfg.epochs):
        bar = tqdm(_batches(n, cfg.batch_size, epoch, cfg.seed, dist), total=per_epoch,
                   desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step", disable=not dist.is_main, leave=False)
        for idx in bar:
            if step >= total:
                break
            batch = [compute.batch(t[idx]) for t in tensors]
            budget_used = (time.perf_counter() - started) / cfg.time_budget_s if cfg.time_budget_s else 0.0
            factor = lr_factor(step, total, warmup, budget_used)
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * group.get("lr_scale", 1.0) * factor
            with compute.autocast():
                loss, metrics = model(*batch)
            if not torch.isfinite(loss):
                raise EdgesslError(f"training diverged at step {step} (loss {float(loss.detach())}); lower --lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            if hasattr(method, "on_step_end"):
                method.on_step_end(min(1.0, max(step / max(1, total - 1), budget_used)))
            step += 1
            seen += len(idx) * dist.world_size
            elapsed = time.perf_counter() - started
            last = {"epoch": epoch, "step": step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"],
                    "images_per_s": seen / max(elapsed, 1e-9), **metrics}
            bar.set_postfix(loss=f"{last['loss']:.4f}", img_s=f"{last['images_per_s']:.0f}")
            if log:
                log.write(last)
                writer.add_scalar("loss", last["loss"], step)
                writer.add_scalar("lr", last["lr"], step)
            if cfg.time_budget_s and elapsed >= cfg.time_budget_s:
                stopped_early = True
                break
        if dist.is_main:
            _save_state(method, optimizer, run_dir, epoch + 1 if not stopped_early else epoch, step)
            on_checkpoint(epoch + 1)
        if stopped_early or step >= total:
            break
    if writer:
        writer.close()
    elapsed = time.perf_counter() - started
    return {"steps": step, "epochs_done": epoch + 1 if not stopped_early else epoch,
            "images_seen": seen, "seconds": round(elapsed, 2),
            "images_per_s": round(seen / max(elapsed, 1e-9), 2), "final_loss": last.get("loss"),
            "stopped_by_budget": stopped_early, "precision": compute.name}


class _CsvLog:
    def __init__(self, path: Path, append: bool):
        self.path, self.fields = path, None
        if not append and path.exists():
            path.unlink()

    def write(self, row: dict) -> None:
        new = not self.path.exists()
        if self.fields is None:
            self.fields = list(row)
        with self.path.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow(row)


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tensorboard"))


def _save_state(method, optimizer, run_dir: Path, epoch: int, step: int) -> None:
    tensors, groups = optimizer_tensors([optimizer])
    tensors.update({f"method.{k}": v for k, v in method.state_dict().items()})
    save_tensors(run_dir / "state.safetensors", tensors)
    write_json(run_dir / "state.json", {"epoch": epoch, "step": step, "param_groups": groups})


def _resume(method, optimizer, run_dir: Path) -> tuple[int, int]:
    import json

    from safetensors.torch import load_file

    from .checkpoint import load_weights

    state_path = run_dir / "state.safetensors"
    if not state_path.is_file():
        raise EdgesslError(f"{run_dir}: nothing to resume from (no state.safetensors)")
    meta = json.loads((run_dir / "state.json").read_text())
    tensors = load_file(str(state_path))
    load_weights(method, {k[7:]: v for k, v in tensors.items() if k.startswith("method.")}, str(state_path))
    restore_optimizers([optimizer], {k: v for k, v in tensors.items() if k.startswith("optim")}, meta["param_groups"])
    return int(meta["epoch"]), int(meta["step"])
