"""Latency and throughput of a bundle through the runtime, beside the same model in a bare session.

Every contender runs the same batches in interleaved rounds (``BLOCK`` timed calls each per round,
after a warm-up, each block led by one untimed call so that the previous contender's spinning
thread pools do not bill the next), so a busy machine slows them alike. Per contender: p50/p90/p99 latency per batch call
(ms) and throughput (``batch_size / p50``, images/s).

* ``runtime``: ``Pipeline.score_batch`` on the raw images: preprocessing, inference, detector
  scoring, normalisation, result records;
* ``bare_ort``: ``session.run`` of the very ONNX Runtime session the runtime uses (same model,
  providers, options and thread pool, so the two never compete for cores) on tensors
  preprocessed beforehand: inference alone;
* any ``extra`` contender (e.g. the PyTorch checkpoint in eager mode) gets the preprocessed batch.

``runtime_overhead`` is ``p50(runtime) / p50(bare_ort) - 1``; ``ratios`` give each contender's
throughput relative to ``runtime``. ``breakdown_ms`` splits the runtime's batch call, medians over
the timed calls: ``preprocess``, ``inference`` (the backend call), ``score`` (detector) as the
results record them, and ``other`` = the call's wall time minus those three (result records,
normalisation, Python).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from .backends.ort import OrtBackend
from .pipeline import Pipeline, Result
from .preprocess import preprocess_batch

BLOCK = 5
STAGES = ("preprocess", "inference", "score")


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p90, p99 of ``values`` (None when empty)."""
    if not values:
        return {"p50": None, "p90": None, "p99": None}
    p = np.percentile(np.asarray(values, np.float64), [50, 90, 99])
    return {"p50": round(float(p[0]), 3), "p90": round(float(p[1]), 3), "p99": round(float(p[2]), 3)}


def synthetic_images(n: int, size: int, channels: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` random uint8 images at the model's input size (grey or RGB)."""
    rng = np.random.RandomState(seed)
    shape = (size, size) if channels == 1 else (size, size, 3)
    return [rng.randint(0, 256, shape, dtype=np.uint8) for _ in range(n)]


def _timed(fn: Callable[[], object]) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t0) * 1e3, out


def breakdown(results: list[Result], wall_ms: float) -> dict[str, float]:
    """One batch call's wall time split into the results' recorded stages and the rest."""
    parts = {k: sum(r.latency_ms[k] for r in results) for k in STAGES}
    parts["other"] = wall_ms - sum(parts.values())
    return parts


def bench_pipeline(pipe: Pipeline, images: list[np.ndarray], batch_size: int = 1, iterations: int = 50,
                   warmup: int = 5, extra: dict[str, Callable[[np.ndarray], object]] | None = None) -> dict:
    """The figures above as a JSON-able dict."""
    batches = [images[(i * batch_size) % len(images):][:batch_size] for i in range(max(1, len(images) // batch_size))]
    batches = [b if len(b) == batch_size else (b * batch_size)[:batch_size] for b in batches]
    tensors = [preprocess_batch(b, pipe.spec) for b in batches]
    contenders: dict[str, Callable[[int], object]] = {"runtime": lambda i: pipe.score_batch(batches[i])}
    if isinstance(pipe.runner, OrtBackend):
        bare = pipe.runner.session
        names = [o.name for o in bare.get_outputs()]
        input_name = bare.get_inputs()[0].name
        contenders["bare_ort"] = lambda i: bare.run(names, {input_name: tensors[i]})
    for name, fn in (extra or {}).items():
        contenders[name] = (lambda f: (lambda i: f(tensors[i])))(fn)
    times: dict[str, list[float]] = {k: [] for k in contenders}
    parts: list[dict[str, float]] = []
    for name, fn in contenders.items():
        for r in range(warmup):
            fn(r % len(batches))
    for start in range(0, iterations, BLOCK):
        for name, fn in contenders.items():
            fn(start % len(batches))  # untimed: the previous contender's thread pools may still spin
            for r in range(start, min(start + BLOCK, iterations)):
                ms, value = _timed(lambda: fn(r % len(batches)))
                times[name].append(ms)
                if name == "runtime":
                    parts.append(breakdown(value, ms))
    out = {"bundle": str(pipe.bundle.root), "bundle_hash": pipe.bundle.hash, "backend": pipe.backend,
           "providers": list(pipe.runner.providers), "precision": pipe.precision_key, "batch_size": batch_size,
           "image_size": pipe.spec.image_size, "iterations": iterations, "warmup": warmup, "results": {}}
    for name, ts in times.items():
        p = percentiles(ts)
        out["results"][name] = {"latency_ms": p, "images_per_s": round(batch_size * 1e3 / p["p50"], 2)}
    out["breakdown_ms"] = {k: round(float(np.median([p[k] for p in parts])), 4) for k in (*STAGES, "other")}
    res = out["results"]
    if "bare_ort" in res:
        out["runtime_overhead"] = round(res["runtime"]["latency_ms"]["p50"] / res["bare_ort"]["latency_ms"]["p50"] - 1, 4)
    out["ratios"] = {f"runtime_vs_{k}": round(res["runtime"]["images_per_s"] / v["images_per_s"], 3)
                     for k, v in res.items() if k != "runtime"}
    return out


def bench_table(result: dict) -> str:
    """A plain-text table of ``bench_pipeline``'s result: one row per contender, ratios to ``runtime``."""
    rows = [f"{'contender':<15} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'images/s':>10} {'runtime x':>10}"]
    res = result["results"]
    for name, r in res.items():
        lat = r["latency_ms"]
        ratio = res["runtime"]["images_per_s"] / r["images_per_s"]
        rows.append(f"{name:<15} {lat['p50']:>8.2f} {lat['p90']:>8.2f} {lat['p99']:>8.2f} "
                    f"{r['images_per_s']:>10.1f} {ratio:>10.2f}")
    head = (f"{result['backend']} {result['precision']} batch {result['batch_size']} at {result['image_size']} px, "
            f"{result['iterations']} iterations after {result['warmup']} warm-up")
    split = "runtime call, medians (ms): " + ", ".join(f"{k} {v:.3f}" for k, v in result["breakdown_ms"].items())
    tail = f"runtime overhead over bare ONNX Runtime (p50): {100 * result['runtime_overhead']:+.1f}%" \
        if "runtime_overhead" in result else ""
    return "\n".join([head, *rows, split, tail]).rstrip()
