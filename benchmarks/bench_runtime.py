"""Runtime overhead and INT8 speed on a resnet18 bundle at 224 px input, in one run.

    .venv/bin/python benchmarks/bench_runtime.py [--work /tmp/edgessl_bench_runtime] [--iterations 40]

Builds (once, in --work) a run with a randomly initialised resnet18 (ImageNet stem, 224 px, RGB;
random init is enough for timing), fits a knn detector on the digits' class 0, exports the bundle
and calibrates INT8 for the CPU. Then, per precision, at batch 1 on the CPU (ONNX Runtime's
default threads), times interleaved after a warm-up (``edgessl bench``'s code): the runtime end to
end (``Pipeline.score_batch`` on 224x224 RGB uint8 images: preprocessing, inference, scoring,
results), a bare ONNX Runtime session on preprocessed tensors, and the PyTorch checkpoint eager.
Prints one table with the ratios and the two targets: runtime overhead <= 10% over bare ORT, INT8
runtime throughput >= 3x PyTorch eager.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgessl.edge_runtime.errors import EdgesslError


def build_bundle(work: Path) -> Path:
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.backbones import BackboneConfig, build_backbone
    from edgessl.train.checkpoint import save_model
    from edgessl.train.fit import FitConfig, fit_run

    run, bundle = work / "run", work / "bundle"
    if (bundle / "manifest.json").is_file():
        return bundle
    spec = PreprocessSpec(image_size=224, channels=3, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    save_model(run, build_backbone(BackboneConfig("resnet18", 3, 224)), spec,
               {"method": "random-init", "data": "digits"})
    fit_run(FitConfig(run=str(run), data="digits", normal_label="0", detector="knn", target_fpr=0.15, device="cpu",
                      batch_size=32))
    export_bundle(ExportConfig(run=str(run), out=str(bundle), verify_images=16, force=True))
    return bundle


def calibrate(bundle: Path) -> str | None:
    from edgessl.demo import _calibrate

    return _calibrate(bundle, "digits")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/edgessl_bench_runtime")
    ap.add_argument("--iterations", type=int, default=40)
    args = ap.parse_args()
    from edgessl.bench_command import BenchConfig, bench

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    bundle = build_bundle(work)
    note = None if "int8-cpu" in json.loads((bundle / "manifest.json").read_text())["precisions"] else calibrate(bundle)
    results = {}
    for precision in ("fp32", "int8"):
        try:
            results[precision] = bench(BenchConfig(bundle=str(bundle), backend="ort-cpu", precision=precision,
                                                   iterations=args.iterations, run=str(work / "run")))
        except EdgesslError as exc:
            note = f"{precision}: {exc}"
    print(f"resnet18, 224x224 RGB input, batch 1, ort-cpu, {args.iterations} iterations per contender "
          "(interleaved, after 5 warm-up), medians")
    print(f"{'model':<8} {'contender':<15} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'images/s':>9}")
    for precision, res in results.items():
        for name, r in res["results"].items():
            lat = r["latency_ms"]
            print(f"{precision:<8} {name:<15} {lat['p50']:>8.2f} {lat['p90']:>8.2f} {lat['p99']:>8.2f} "
                  f"{r['images_per_s']:>9.1f}")
    for precision, res in results.items():
        r = res["results"]
        print(f"{precision}: runtime overhead over bare ORT {100 * res['runtime_overhead']:+.1f}% (target <= 10%)")
        if "pytorch_eager" in r:
            print(f"{precision}: runtime vs PyTorch eager throughput "
                  f"{r['runtime']['images_per_s'] / r['pytorch_eager']['images_per_s']:.2f}x"
                  + (" (target >= 3x)" if precision == "int8" else ""))
    if note:
        print(f"note: {note}")
    (work / "bench_runtime.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
