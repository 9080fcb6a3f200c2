"""The one training loop every pretext task shares, readable top to bottom.

``train`` runs ``train_one_epoch`` per epoch, then a checkpoint (at most one a minute); each of its
steps is ``train_step``. Per step: take a shuffled mini-batch (each ``torchrun`` process its own
share), ``loss = method(batch)`` under autocast (bf16 where the hardware has it natively:
``precision``), back-propagate, clip, step, update the learning rate (linear warm-up, then cosine
decay to 0 at the last step or, with ``--time-budget``, at the end of the budget, whichever is
first), ``method.on_step_end``. Logs go to a progress bar, ``metrics.csv`` and TensorBoard;
checkpoints (safetensors + JSON) are written at an epoch's end when ``checkpoint_every_s`` has
passed since the last one, and at the end, and a run resumes from its last one. With ``epochs`` 0
the time budget (or the step limit) alone ends training.
"""

from __future__ import annotations

import csv
import json
import math
import random
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from edgessl.edge_runtime.errors import EdgesslError

from .checkpoint import optimizer_tensors, restore_optimizers, save_tensors, write_json
from .distributed import DistInfo
from .precision import Compute, active


@dataclass
class LoopConfig:
    """What the loop runs: built by each command from its config (``config.TrainingSchedule``),
    so its defaults live there, but for the two the loop alone uses (gradient clipping and the
    checkpoints' spacing). ``epochs`` 0: until the time budget or the step limit ends it;
    ``time_budget_s`` and ``max_steps`` 0: no limit."""

    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_epochs: float
    seed: int
    time_budget_s: float
    max_steps: int
    grad_clip: float = 5.0  # max global gradient norm
    # At an epoch's end a checkpoint is written when this many seconds have passed since the last one,
    # and always at the end of training: on small data sets one each epoch made CPU training 1.2x
    # slower (BreastMNIST, 17 steps an epoch; docs/train.md).
    checkpoint_every_s: float = 60.0


BUDGET_KEYS = ("epochs", "max_steps", "time_budget_s")  # what ends training, kept in state.json


def budget(cfg: LoopConfig) -> dict:
    """What ends a run of ``cfg``: its ``BUDGET_KEYS``."""
    return {k: getattr(cfg, k) for k in BUDGET_KEYS}


def saved_budget(run_dir: Path) -> dict | None:
    """The ``BUDGET_KEYS`` a run's last checkpoint trained to (None: no checkpoint, or one written
    before they were kept)."""
    path = run_dir / "state.json"
    kept = json.loads(path.read_text()).get("budget") if path.is_file() else None
    return {k: kept[k] for k in BUDGET_KEYS} if kept else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def lr_factor(step: int, total: int, warmup: int, time_progress: float = 0.0) -> float:
    """Linear warm-up over ``warmup`` steps, then half-cosine from 1 to 0 at ``total`` steps or, with a
    time budget, when ``time_progress`` (elapsed / budget) reaches 1, whichever comes first
    (``total`` 0: the time budget alone)."""
    if step < warmup:
        return (step + 1) / warmup
    step_progress = (step - warmup) / max(1, total - warmup) if total else 0.0
    progress = max(step_progress, time_progress)
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


@dataclass
class _Progress:
    """What the loop carries from step to step (and into the run summary)."""

    epoch: int
    step: int
    started: float = field(default_factory=time.perf_counter)
    seen: int = 0
    last: dict = field(default_factory=dict)
    stopped_by_budget: bool = False
    skipped: int = 0  # steps skipped in a row (``train_step``)
    redone: int = 0  # steps computed again in fp32 after bf16 overflows
    checkpointed: float = 0.0  # ``elapsed`` at the last checkpoint

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started


def build_optimizer(method: torch.nn.Module, cfg: LoopConfig) -> torch.optim.Optimizer:
    """AdamW over ``method.param_groups()`` (or every trainable parameter)."""
    groups = method.param_groups() if hasattr(method, "param_groups") else \
        [{"params": [p for p in method.parameters() if p.requires_grad]}]
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def total_steps(per_epoch: int, cfg: LoopConfig) -> int:
    """Steps the schedule runs to; 0 when only the time budget ends training (``epochs`` 0)."""
    total = per_epoch * cfg.epochs
    if cfg.max_steps:
        total = min(total, cfg.max_steps) if total else cfg.max_steps
    return total


MAX_SKIPPED = 3  # bf16 steps with non-finite gradients skipped in a row; the next such step is redone in fp32


def train_step(model, optimizer: torch.optim.Optimizer, batch: list[torch.Tensor], cfg: LoopConfig,
               lr_scale: float, compute: Compute, step: int, skipped: int = 0) -> tuple[float, dict]:
    """One optimizer step at ``cfg.lr * lr_scale``; returns the loss and the method's metrics
    (``skipped``: the step was not taken, its gradients were not finite in bf16; ``skipped`` in the
    arguments counts the steps skipped in a row before this one: past ``MAX_SKIPPED`` the step is
    computed again in fp32 and ``redone`` is set, and only fp32's non-finite gradients are a
    divergence)."""
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr * group.get("lr_scale", 1.0) * lr_scale
    with compute.autocast():
        loss, metrics = model(*batch)
    if not torch.isfinite(loss):
        raise EdgesslError(f"training diverged at step {step} (loss {float(loss.detach())}); lower --lr")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                          cfg.grad_clip or float("inf"))
    if not torch.isfinite(norm):
        if compute.dtype is None:  # in fp32, non-finite gradients are a divergence
            raise EdgesslError(f"training diverged at step {step} (gradient norm {float(norm)}); lower --lr")
        if skipped >= MAX_SKIPPED:  # a run of bf16 overflows (four ended a CI run once, jigsaw): fp32
            loss, metrics = train_step(model, optimizer, batch, cfg, lr_scale, replace(compute, dtype=None), step)
            return loss, {**metrics, "redone": True}
        # an overflow in bf16's backward (seen with jigsaw on mobilenet): skipped, as AMP's GradScaler does
        return float(loss.detach()), {**metrics, "skipped": True}
    optimizer.step()
    return float(loss.detach()), metrics


def train_one_epoch(model, method, optimizer: torch.optim.Optimizer, tensors: tuple[torch.Tensor, ...],
                    cfg: LoopConfig, state: _Progress, total: int, warmup: int, bar: tqdm,
                    compute: Compute, dist: DistInfo, log: Callable[[dict], None] | None) -> None:
    """The steps of epoch ``state.epoch``, until the epoch, ``total`` steps or the time budget ends.
    A budget that is the only end of training (no epochs, no step limit) and is spent by the first
    step is refused: nothing would have been learnt."""
    for idx in _batches(len(tensors[0]), cfg.batch_size, state.epoch, cfg.seed, dist):
        if total and state.step >= total:
            return
        batch = [compute.batch(t[idx]) for t in tensors]
        budget_used = state.elapsed / cfg.time_budget_s if cfg.time_budget_s else 0.0
        loss, metrics = train_step(model, optimizer, batch, cfg, lr_factor(state.step, total, warmup,
                                   budget_used), compute, state.step, state.skipped)
        redone = metrics.pop("redone", False)  # after a redo, the next overflow is redone at once
        state.skipped = state.skipped + 1 if metrics.pop("skipped", False) else MAX_SKIPPED if redone else 0
        state.redone += redone
        if hasattr(method, "on_step_end"):
            method.on_step_end(min(1.0, max(state.step / max(1, total - 1) if total else 0.0, budget_used)))
        state.step += 1
        state.seen += len(idx) * dist.world_size
        state.last = {"epoch": state.epoch, "step": state.step, "loss": loss, "lr": optimizer.param_groups[0]["lr"],
                      "images_per_s": state.seen / max(state.elapsed, 1e-9), **metrics}
        bar.update()
        bar.set_postfix(epoch=state.epoch + 1, loss=f"{loss:.4f}", img_s=f"{state.last['images_per_s']:.0f}")
        if log:
            log(state.last)
        if cfg.time_budget_s and state.elapsed >= cfg.time_budget_s:
            if state.seen == len(idx) * dist.world_size and not (cfg.epochs or cfg.max_steps):
                raise EdgesslError(f"--time-budget {cfg.time_budget_s:g} s is shorter than one training step "
                                   f"({state.elapsed:.1f} s here); raise --time-budget or lower --batch-size")
            state.stopped_by_budget = True
            return


def _progress_bar(cfg: LoopConfig, total: int, done: int, dist: DistInfo) -> tqdm:
    """One bar for the whole run, in steps: out of ``total`` when the steps are known, else counting
    (a time budget alone ends training)."""
    what = f"training, {cfg.time_budget_s:g} s budget" if cfg.time_budget_s and not total else "training"
    return tqdm(total=total or None, initial=done, desc=what, unit="step", leave=False,
                disable=not dist.is_main)


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
    the scheduled learning rate) and ``on_step_end(progress)``. ``cfg.epochs`` 0 trains until
    ``cfg.time_budget_s`` (or ``cfg.max_steps``) ends it.

    ``on_checkpoint(epoch)`` is called on the main process to write the model files.
    """
    if not (cfg.epochs or cfg.time_budget_s or cfg.max_steps):
        raise EdgesslError("training needs an end: give --epochs, --time-budget or --max-steps")
    compute = active(device)
    compute.module(method)
    optimizer = build_optimizer(method, cfg)
    model = method
    if dist.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            method, device_ids=[device.index] if device.type == "cuda" else None)

    tensors = data if isinstance(data, tuple) else (data,)
    per_epoch = steps_per_epoch(len(tensors[0]), cfg.batch_size, dist)
    total = total_steps(per_epoch, cfg)
    warmup = max(1, int(cfg.warmup_epochs * per_epoch))
    if total:  # on a large set half an epoch can be most of a step budget: warm up over a tenth at most
        warmup = min(warmup, max(1, total // 10))
    start = _resume(method, optimizer, run_dir) if resume else (0, 0)
    if (cfg.epochs and start[0] >= cfg.epochs) or (total and start[1] >= total):
        raise EdgesslError(f"{run_dir}: nothing left to train ({start[0]} epochs, {start[1]} steps done); raise "
                           "--epochs or --max-steps to train on")
    writer = _tensorboard(run_dir) if dist.is_main else None
    csv_log = _CsvLog(run_dir / "metrics.csv", append=resume) if dist.is_main else None
    state = _Progress(*start)  # the clock starts here

    def log(row: dict) -> None:
        csv_log.write(row)
        writer.add_scalar("loss", row["loss"], row["step"])
        writer.add_scalar("lr", row["lr"], row["step"])

    method.train()
    bar = _progress_bar(cfg, total, state.step, dist)
    try:
        while True:
            train_one_epoch(model, method, optimizer, tensors, cfg, state, total, warmup, bar, compute, dist,
                            log if dist.is_main else None)
            epochs_done = state.epoch if state.stopped_by_budget else state.epoch + 1
            done = state.stopped_by_budget or (total and state.step >= total) or epochs_done == cfg.epochs
            if dist.is_main and (done or state.elapsed - state.checkpointed >= cfg.checkpoint_every_s):
                _save_state(method, optimizer, run_dir, epochs_done, state.step, cfg)
                on_checkpoint(epochs_done)
                state.checkpointed = state.elapsed
            if done:
                break
            state.epoch += 1
    finally:
        bar.close()
        if writer:
            writer.close()
    elapsed = state.elapsed
    return {"steps": state.step, "epochs_done": epochs_done,
            "images_seen": state.seen, "seconds": round(elapsed, 2),
            "images_per_s": round(state.seen / max(elapsed, 1e-9), 2), "final_loss": state.last.get("loss"),
            "stopped_by_budget": state.stopped_by_budget, "budget": budget(cfg), "precision": compute.name,
            "fp32_redone_steps": state.redone}


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


def _save_state(method, optimizer, run_dir: Path, epoch: int, step: int, cfg: LoopConfig) -> None:
    tensors, groups = optimizer_tensors([optimizer])
    tensors.update({f"method.{k}": v for k, v in method.state_dict().items()})
    save_tensors(run_dir / "state.safetensors", tensors)
    write_json(run_dir / "state.json", {"epoch": epoch, "step": step, "param_groups": groups,
                                        "budget": budget(cfg)})


def _resume(method, optimizer, run_dir: Path) -> tuple[int, int]:
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
