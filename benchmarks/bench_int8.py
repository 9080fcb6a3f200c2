"""Latency and throughput of a bundle's fp32, INT8-cpu and INT8-tensorrt models in ONNX Runtime (CPU).

    python benchmarks/bench_int8.py --bundle BUNDLE [--batches 1 16] [--runs 30] [--threads 2]

Median wall time per ``session.run`` after ``--warmup`` runs, on real preprocessed images from the
bundle's data (random normal tensors when it cannot be read), and images/s = batch / median;
ratios are fp32's median over each model's (> 1: faster than fp32). One table, one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def _inputs(bundle, batch: int) -> np.ndarray:
    from edgessl.edge_runtime.errors import EdgesslError
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import verification_images

    spec = PreprocessSpec.from_dict(bundle.manifest["preprocess"])
    try:
        x, _ = verification_images(bundle.manifest["detector"]["data"], spec, batch)
    except (EdgesslError, KeyError, TypeError):
        x = np.zeros((0, spec.channels, spec.image_size, spec.image_size), np.float32)
    if len(x) < batch:
        x = np.random.RandomState(0).randn(batch, spec.channels, spec.image_size, spec.image_size).astype(np.float32)
    return x[:batch]


def median_ms(session, x: np.ndarray, warmup: int, runs: int) -> float:
    feed = {session.get_inputs()[0].name: x}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        session.run(None, feed)
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def main() -> None:
    import onnxruntime as ort

    from edgessl.edge_runtime.bundle import Bundle

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    bundle = Bundle.load(args.bundle)
    keys = [k for k in ("fp32", "int8-cpu", "int8-tensorrt") if k in bundle.manifest["precisions"]]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sessions = {k: ort.InferenceSession(bundle.model_bytes(k), opts, providers=["CPUExecutionProvider"]) for k in keys}
    shape = bundle.manifest["model"]["input"]["shape"][1:]
    print(f"bundle {args.bundle}: input {shape}, ONNX Runtime {ort.__version__} CPU, {args.threads} threads, "
          f"median of {args.runs} runs after {args.warmup} warm-up")
    print(f"{'model':<15}{'batch':>6}{'median ms':>11}{'images/s':>10}{'vs fp32':>9}")
    for batch in args.batches:
        x = _inputs(bundle, batch)
        ms = {k: median_ms(s, x, args.warmup, args.runs) for k, s in sessions.items()}
        for k in keys:
            print(f"{k:<15}{batch:>6}{ms[k]:>11.2f}{batch * 1000 / ms[k]:>10.0f}{ms['fp32'] / ms[k]:>8.2f}x")


if __name__ == "__main__":
    main()
