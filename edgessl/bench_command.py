"""``edgessl bench``: the runtime against a bare ONNX Runtime session and, where torch and the run
directory are present, the PyTorch checkpoint in eager mode, in one run.

It lives outside ``edge_runtime`` because the eager baseline comes from ``edgessl.train``; on a
device without torch it benches the runtime and bare ONNX Runtime only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


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


def bench(bundle: str, backend: str = "auto", precision: str = "fp32", batch_size: int = 1, iterations: int = 50,
          warmup: int = 5, data: str | None = None, run: str | None = None, eager: bool = True,
          threads: int = 0, public_key: str | None = None, expect_sha256: str | None = None) -> dict:
    """Load the bundle and time all contenders (see ``edge_runtime.bench``)."""
    from edgessl.edge_runtime.backends.ort import OrtOptions
    from edgessl.edge_runtime.streams.bench import bench_pipeline, synthetic_images
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.pipeline import Pipeline

    pipe = Pipeline.load(bundle, backend=backend, precision=precision, options=OrtOptions(intra_op_threads=threads),
                         public_key=public_key, expect_sha256=expect_sha256)
    n = max(batch_size * 4, 16)
    if data:
        ds = open_dataset(data, "test")
        images = [ds.image(i % len(ds)) for i in range(n)]
    else:
        images = synthetic_images(n, pipe.spec.image_size, pipe.spec.channels)
    extra, note = eager_contender(pipe.bundle.manifest, run) if eager else ({}, None)
    result = bench_pipeline(pipe, images, batch_size, iterations, warmup, extra)
    result["images"] = data or "synthetic (random pixels at the model's input size)"
    if note:
        result["note"] = note
    return result


def _bench(args: argparse.Namespace) -> int:
    from edgessl.edge_runtime.streams.bench import bench_table

    result = bench(args.bundle, args.backend, args.precision, args.batch_size, args.iterations, args.warmup,
                   args.data, args.run, args.eager, args.threads, args.public_key, args.expect_sha256)
    if args.json:
        print(json.dumps(result))
    else:
        print(bench_table(result))
        if result.get("note"):
            print(result["note"], file=sys.stderr)
    return 0


def register(sub) -> dict[str, argparse.ArgumentParser]:
    from edgessl.edge_runtime.commands.run import add_bundle_options

    p = sub.add_parser(
        "bench", help="latency/throughput of a bundle: runtime vs bare ONNX Runtime vs PyTorch eager",
        description="Time Pipeline.score_batch (preprocessing + inference + scoring), a bare ONNX Runtime "
                    "session of the same model on preprocessed tensors, and (where torch and the run directory "
                    "exist) the PyTorch checkpoint in eager mode, interleaved in one run after a warm-up. "
                    "Prints p50/p90/p99 ms per batch, images/s, and ratios.")
    add_bundle_options(p)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--iterations", type=int, default=50, help="timed calls per contender (default: 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default: 5)")
    p.add_argument("--data", default=None, help="bench on these images (test split) instead of random pixels")
    p.add_argument("--run", default=None, metavar="RUN_DIR", help="PyTorch run for the eager baseline "
                   "(default: the bundle's provenance)")
    p.add_argument("--no-eager", dest="eager", action="store_false", help="skip the PyTorch eager baseline")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_bench)
    return {"bench": p}
