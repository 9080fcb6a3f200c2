"""What ``edgessl bench`` times: the runtime against a bare ONNX Runtime session and, where torch
and the run directory are present, the PyTorch checkpoint in eager mode, in one run.

It lives outside ``edge_runtime`` because the eager baseline comes from ``edgessl.train``; on a
device without torch it benches the runtime and bare ONNX Runtime only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgessl.edge_runtime.pipeline_options import BundleOptions


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
    """``iterations`` timed calls of ``batch_size`` images per contender after ``warmup`` untimed
    ones, on the test images of ``data`` (None: random pixels); ``run``: the PyTorch run of the
    ``eager`` baseline (None: the bundle's provenance)."""

    batch_size: int = 1
    iterations: int = 50
    warmup: int = 5
    data: str | None = None
    run: str | None = None
    eager: bool = True


def bench(cfg: BenchConfig) -> dict:
    """Load the bundle and time all contenders (see ``edge_runtime.timing``)."""
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.timing import bench_pipeline, synthetic_images

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
