"""``edgessl bench``: the runtime against a bare ONNX Runtime session and, where torch and the run
directory are present, the PyTorch checkpoint in eager mode, in one run.

It lives outside ``edge_runtime`` because the eager baseline comes from ``edgessl.train``; on a
device without torch it benches the runtime and bare ONNX Runtime only.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from edgessl.edge_runtime.commands.options import Outcome, add_command, config_from_args
from edgessl.edge_runtime.config import BundleOptions, option


def eager_contender(manifest: dict, run_dir: str | None) -> tuple[dict, str | None]:
    """``{"pytorch_eager": fn}`` when torch and the run directory are available, else ``{}`` and why not."""
    run = run_dir or manifest.get("provenance", {}).get("run_dir")
    if not run or not (Path(run) / "model.safetensors").is_file():
        return {}, f"no PyTorch checkpoint to compare with (run directory {run!r} not found; pass --run)"
    try:
        from edgessl.train.eager import eager_runner
    except ImportError as exc:
        return {}, f"PyTorch eager baseline skipped: {exc}"
    return {"pytorch_eager": eager_runner(run, list(manifest.get("model", {}).get("outputs", {})))}, None


@dataclass
class BenchConfig(BundleOptions):
    batch_size: int = option(1, "images per timed call")
    iterations: int = option(50, "timed calls per contender")
    warmup: int = option(5, "untimed calls first")
    data: str | None = option(None, "bench on this dataset's test images instead of random pixels")
    run: str | None = option(None, "PyTorch run for the eager baseline (default: the bundle's provenance)",
                             metavar="RUN_DIR")
    eager: bool = option(True, "the PyTorch eager baseline")


def bench(cfg: BenchConfig) -> dict:
    """Load the bundle and time all contenders (see ``edge_runtime.streams.bench``)."""
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.streams.bench import bench_pipeline, synthetic_images

    pipe = cfg.pipeline()
    n = max(cfg.batch_size * 4, 16)
    if cfg.data:
        ds = open_dataset(cfg.data, "test")
        images = [ds.image(i % len(ds)) for i in range(n)]
    else:
        images = synthetic_images(n, pipe.spec.image_size, pipe.spec.channels)
    extra, note = eager_contender(pipe.bundle.manifest, cfg.run) if cfg.eager else ({}, None)
    result = bench_pipeline(pipe, images, cfg.batch_size, cfg.iterations, cfg.warmup, extra)
    result["images"] = cfg.data or "synthetic (random pixels at the model's input size)"
    if note:
        result["note"] = note
    return result


def _bench(args: argparse.Namespace) -> Outcome:
    """Time Pipeline.score_batch (preprocessing + inference + scoring), a bare ONNX Runtime session of
    the same model on preprocessed tensors, and (where torch and the run directory exist) the
    PyTorch checkpoint in eager mode, interleaved in one run after a warm-up. Prints p50/p90/p99 ms
    per batch, images/s, and ratios.
    """
    from edgessl.edge_runtime.streams.bench import bench_table

    result = bench(config_from_args(BenchConfig, args))
    text = bench_table(result) + (f"\nnote: {result['note']}" if result.get("note") else "")
    return Outcome(result, text)


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return add_command(
        sub, "bench", _bench, BenchConfig,
        help="latency/throughput of a bundle: runtime vs bare ONNX Runtime vs PyTorch eager")
