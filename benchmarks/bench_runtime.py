"""Runtime overhead over a bare ONNX Runtime session at the project's model sizes, in one run.

    .venv/bin/python benchmarks/bench_runtime.py [--work runs/bench_runtime] [--sizes 28,64,224]
        [--detectors knn,patch] [--iterations 200]

Builds (once, in --work) per image size a run with a randomly initialised resnet18 (the
backbone's own stem for that size; grey below 224 px, RGB at 224; random init is enough for
timing), fits each detector on the digits' class 0, exports the bundle and calibrates INT8 for the
CPU. Then, per bundle and precision (fp32, int8-cpu), at batch 1 on the CPU (ONNX Runtime's default
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


def build_bundle(work: Path, size: int, detector: str) -> Path:
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.backbones import BackboneConfig, build_backbone
    from edgessl.train.checkpoint import save_model
    from edgessl.train.fit import FitConfig, fit_run
    from edgessl.demo import _calibrate

    run, bundle = work / f"{size}-{detector}" / "run", work / f"{size}-{detector}" / "bundle"
    if (bundle / "manifest.json").is_file() and "int8-cpu" in json.loads((bundle / "manifest.json").read_text())["precisions"]:
        return bundle
    channels = 1 if size < 224 else 3
    spec = PreprocessSpec(image_size=size, channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels)
    save_model(run, build_backbone(BackboneConfig("resnet18", channels, size)), spec,
               {"method": "random-init", "data": "digits"})
    fit_run(FitConfig(run=str(run), data="digits", normal_label="0", detector=detector, target_fpr=0.15,
                      device="cpu", batch_size=32))
    export_bundle(ExportConfig(run=str(run), out=str(bundle), verify_images=16, force=True))
    note = _calibrate(bundle, "digits")
    if note:
        raise SystemExit(note)
    return bundle


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/bench_runtime")
    ap.add_argument("--sizes", default="28,64,224")
    ap.add_argument("--detectors", default="knn,patch")
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    from edgessl.bench_command import BenchConfig, bench

    work = Path(args.work)
    configs = [(int(s), d) for s in args.sizes.split(",") for d in args.detectors.split(",")]
    bundles = {c: build_bundle(work, *c) for c in configs}
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
