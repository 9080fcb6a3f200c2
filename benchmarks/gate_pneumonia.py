"""The INT8 accuracy gate on a PneumoniaMNIST resnet18 bundle, end to end, briefly trained.

    python benchmarks/gate_pneumonia.py [--out /tmp/edgessl-gate] [--steps 20] [--method entropy]

pretrain (SimCLR, resnet18, 28 px, ``--steps`` optimiser steps of 32 images) -> fit (knn on the
normal training images, threshold at 5% FPR from the val normals) -> export (verified) ->
calibrate --target both; prints the export verification and the calibration summary.
Needs ../shared/data/pneumoniamnist/pneumoniamnist.npz.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="/tmp/edgessl-gate")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--method", default="entropy")
    ap.add_argument("--num-images", type=int, default=256)
    args = ap.parse_args()
    if not DATA.is_file():
        raise SystemExit(f"{DATA} not found")
    from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle
    from edgessl.calibration.gate_report import summary_text
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.fit import FitConfig, fit_run
    from edgessl.train.pretrain import PretrainConfig, pretrain

    out, times = Path(args.out), {}
    run, bundle = out / "run", out / "bundle"
    t = time.perf_counter()
    pretrain(PretrainConfig(data=str(DATA), method="simclr", image_size=28, batch_size=32, max_steps=args.steps,
                            device="cpu", out=str(run)))
    times["pretrain"] = time.perf_counter() - t
    t = time.perf_counter()
    fit_run(FitConfig(run=str(run), data=str(DATA), normal_label="0", detector="knn", target_fpr=0.05, device="cpu"))
    times["fit"] = time.perf_counter() - t
    t = time.perf_counter()
    manifest = export_bundle(ExportConfig(run=str(run), out=str(bundle), verify_images=64, force=True))
    times["export"] = time.perf_counter() - t
    t = time.perf_counter()
    report = calibrate_bundle(CalibrateConfig(bundle=str(bundle), data=str(DATA), method=args.method,
                                              num_images=args.num_images, target="both"))
    times["calibrate"] = time.perf_counter() - t
    v = manifest["model"]["verification"]
    print(f"pretrain: SimCLR resnet18 28 px, {args.steps} steps x 32 images; bundle: {bundle}")
    print("export verification:", json.dumps({"images": v["images"], "embedding_rel": v["outputs"]["embedding"]["rel"],
                                              "scores_rel": v["scores"]["rel"], "decision_flips": v["decision_flips"]}))
    print(summary_text(report), end="")
    print("seconds:", {k: round(s, 1) for k, s in times.items()})


if __name__ == "__main__":
    main()
