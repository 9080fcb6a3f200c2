"""Runtime overhead over a bare ONNX Runtime session at the project's model sizes, in one run.

    .venv/bin/python benchmarks/bench_runtime.py [--work runs/bench_runtime] [--sizes 28,64,224]
        [--detectors gaussian,knn,patch] [--iterations 200]

Builds (once, in --work) per image size and detector a bundle (``timing_bundle.py``: random-init
resnet18, grey below 224 px, RGB at 224, fitted on the digits' class 0 with fit's defaults, INT8
for the CPU). Then, per bundle and precision (fp32, int8-cpu), at batch 1 on the CPU (ONNX Runtime's default
threads), ``edgessl bench``'s code times interleaved after a warm-up: the runtime end to end
(``Pipeline.score_batch`` on uint8 images at the model's size: preprocessing, inference, scoring,
results) against the very same session called bare on preprocessed tensors. Prints p50s, the
ratio runtime/bare (target <= 1.10) and the runtime's breakdown (preprocess, inference, score,
other; medians).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from timing_bundle import timing_bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/bench_runtime")
    ap.add_argument("--sizes", default="28,64,224")
    ap.add_argument("--detectors", default="gaussian,knn,patch", help="detectors timed (gaussian: fit's default)")
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    from edgessl.bench import BenchConfig, bench

    work = Path(args.work)
    configs = [(int(s), d) for s in args.sizes.split(",") for d in args.detectors.split(",")]
    bundles = {}
    for size, detector in configs:
        bundle, note = timing_bundle(work / f"{size}-{detector}", size, 1 if size < 224 else 3, detector)
        if note:
            raise SystemExit(f"{size} px {detector}: {note}")
        bundles[size, detector] = bundle
    rows = []
    for (size, detector), bundle in bundles.items():
        for precision in ("fp32", "int8"):
            r = bench(BenchConfig(bundle=str(bundle), backend="ort-cpu", precision=precision,
                                  iterations=args.iterations, warmup=20, eager=False))
            rows.append((size, detector, precision, r))
    print(f"resnet18 random init, batch 1, ort-cpu, {args.iterations} timed calls per contender "
          "(interleaved blocks, after 20 warm-up), medians; breakdown = the runtime call's median parts")
    print(f"{'px':>4} {'detector':<8} {'model':<8} {'bare ms':>8} {'runtime ms':>10} {'ratio':>6} "
          f"{'preproc':>8} {'infer':>8} {'score':>8} {'other':>8}")
    for size, detector, precision, r in rows:
        res, b = r["results"], r["breakdown_ms"]
        bare, run = res["bare_ort"]["latency_ms"]["p50"], res["runtime"]["latency_ms"]["p50"]
        print(f"{size:>4} {detector:<8} {r['precision']:<8} {bare:>8.3f} {run:>10.3f} {run / bare:>6.3f} "
              f"{b['preprocess']:>8.3f} {b['inference']:>8.3f} {b['score']:>8.3f} {b['other']:>8.3f}")
    worst = max(r["results"]["runtime"]["latency_ms"]["p50"] / r["results"]["bare_ort"]["latency_ms"]["p50"]
                for *_, r in rows)
    print(f"worst runtime/bare ratio {worst:.3f} (target <= 1.10)")
    (work / "bench_runtime.json").write_text(json.dumps([r for *_, r in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
