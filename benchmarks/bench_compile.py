"""Does ``torch.compile`` pay for pretraining on a CPU? Seconds per optimiser step of ``pretrain``'s
defaults (its method, backbone, image size, views, batch and training step), eager against the backbone's
forward compiled by TorchInductor, and what each buys in a 600 s budget once the compile is paid.

Rows as in ``bench_train_speed.py``: ``native`` (this host, ``auto`` precision: bf16 where the CPU has
it) and ``avx2`` (PyTorch's kernels and oneDNN held to AVX2, fp32: a stand-in for the hosts without
AVX-512). Each row is a fresh process; the images are random uint8 (a step's cost does not depend on
the pixels). The per-step figure is the median of the steps after the first five; the compile is
the first step's extra time: in a fresh Inductor cache (a host's first run), and again with the
cache that run left (later runs of the same shapes).

    python benchmarks/bench_compile.py                 # 25 steps a row, 2 threads
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from bench_quality import cpu_flags
from bench_train_speed import BUDGET_S, fresh_json

from edgessl.train.config import PretrainConfig

WARM = 5  # steps left out of the median (allocator and oneDNN warm-up)


def time_steps(compiled: bool, steps: int, torch_precision: str) -> dict:
    """This process: ``steps`` of ``pretrain``'s training steps (``loop.train_step``: the learning
    rate set, gradients clipped, AdamW) with its defaults; the first step's seconds and the median."""
    import torch

    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.train import precision
    from edgessl.train.augment import AugmentConfig
    from edgessl.train.backbones import BackboneConfig, build_backbone
    from edgessl.train.loop import build_optimizer, train_step
    from edgessl.train.methods import METHODS
    from edgessl.train.pretrain import loop_config

    cfg = PretrainConfig(max_steps=steps)
    loop = loop_config(cfg)
    torch.manual_seed(cfg.seed)
    spec = PreprocessSpec(cfg.image_size, 1, (0.5,), (0.25,))
    backbone = build_backbone(BackboneConfig(cfg.backbone, 1, cfg.image_size, cfg.stem_stride))
    method = METHODS[cfg.method].for_data(backbone, spec, 2000, AugmentConfig(crop_scale=(cfg.crop_min, 1.0)))
    precision.select(torch_precision)
    compute = precision.active(torch.device("cpu"))
    compute.module(method)
    if compiled:
        backbone.forward = torch.compile(backbone.forward)
    optimizer = build_optimizer(method, loop)
    images = torch.randint(0, 256, (2000, 1, cfg.image_size, cfg.image_size), dtype=torch.uint8)
    seconds = []
    for step in range(steps):
        started = time.perf_counter()
        batch = [compute.batch(images[torch.randint(0, len(images), (cfg.batch_size,))])]
        train_step(method, optimizer, batch, loop, 1.0, compute, step)
        seconds.append(time.perf_counter() - started)
    return {"first": seconds[0], "step": statistics.median(seconds[WARM:]), "precision": compute.name}


def row(compiled: bool, avx2: bool, steps: int, threads: int, cache: str) -> dict:
    """``time_steps`` in a fresh process, with Inductor's cache in ``cache``."""
    cmd = [sys.executable, __file__, "--one", "compile" if compiled else "eager", "--steps", str(steps),
           "--torch-precision", "fp32" if avx2 else PretrainConfig.torch_precision]
    return fresh_json(cmd, threads, avx2, {"TORCHINDUCTOR_CACHE_DIR": cache})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=25, help="optimiser steps a row (the first five are warm-up)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--one", choices=("eager", "compile"), help=argparse.SUPPRESS)  # a row's own process
    ap.add_argument("--torch-precision", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps <= WARM:
        raise SystemExit(f"--steps must be above {WARM} (the warm-up steps)")
    if args.one:
        print(json.dumps(time_steps(args.one == "compile", args.steps, args.torch_precision)))
        return
    print(f"pretrain's defaults, eager vs torch.compile, {args.steps} steps a row, {args.threads} threads on "
          f"{cpu_flags()}")
    print(f"| kernels | mode | s/step | compile s | steps in {BUDGET_S:.0f} s | x eager's steps |")
    print("|---|---|---|---|---|---|")
    for avx2 in (False, True):
        eager = None
        with tempfile.TemporaryDirectory(prefix="bench_compile_") as cache:
            for mode, compiled in (("eager", False), ("compile, first run", True), ("compile, cached", True)):
                r = row(compiled, avx2, args.steps, args.threads, cache)
                extra = max(0.0, r["first"] - r["step"]) if compiled else 0.0
                budget = max(0.0, BUDGET_S - extra) / r["step"]
                eager = eager or budget
                print(f"| {'avx2' if avx2 else 'native'}, {r['precision']} | {mode} | {r['step']:.3f} | {extra:.1f} | "
                      f"{budget:.0f} | {budget / eager:.2f} |", flush=True)


if __name__ == "__main__":
    main()
