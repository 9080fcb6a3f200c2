"""CLI registration of ``calibrate``. The handler imports onnx/onnxruntime only when it runs."""

from __future__ import annotations

import argparse

from edgessl.edge_runtime.commands.options import add_source_options, config_from_args


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import CalibrateConfig, calibrate_bundle
    from .gate import GateFailed
    from .report import summary_text

    try:
        report = calibrate_bundle(config_from_args(CalibrateConfig, args))
    except GateFailed as exc:
        print(summary_text(exc.report), end="")
        raise
    print(summary_text(report), end="")
    print(f"written into {args.bundle}: " + ", ".join(t["model"] for t in report["targets"].values()) +
          ", calibration_report.json, calibration_summary.txt")
    return 0


def register(sub) -> dict[str, argparse.ArgumentParser]:
    c = sub.add_parser(
        "calibrate", help="INT8 Q/DQ models for a bundle (TensorRT and CPU), with an accuracy gate",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Post-training INT8 from normal training images read through the runtime's preprocessing.\n"
                    "  --target tensorrt  symmetric int8 Q/DQ, per-channel weights (TensorRT 10/11, ORT TensorRT/CUDA)\n"
                    "  --target cpu       asymmetric uint8 activations (fast in ONNX Runtime on CPUs)\n"
                    "The gate compares each INT8 model with fp32 on held-out images (embedding cosine, score\n"
                    "Spearman, AUROC change); on failure the costliest layers stay in float and it retries.\n"
                    "Each INT8 threshold is re-derived from held-out normal scores. Nothing is written unless\n"
                    "every target passes.\n"
                    "Example: edgessl calibrate --bundle bundles/digits --data digits --target both")
    c.add_argument("--bundle", required=True, metavar="BUNDLE")
    c.add_argument("--data", default=None, help="data source (default: the data the detector was fitted on)")
    c.add_argument("--target", default="both", choices=("tensorrt", "cpu", "both"), help="default: both")
    c.add_argument("--method", default="entropy", choices=("minmax", "percentile", "entropy"),
                   help="activation range method (default: entropy, TensorRT's KL histogram calibration)")
    c.add_argument("--num-images", type=int, default=256, metavar="N", help="calibration images (default: 256, min 32)")
    c.add_argument("--normal-label", default=None, metavar="L", help="normal class (default: the detector's)")
    c.add_argument("--percentile", type=float, default=99.99, help="for --method percentile (default: 99.99)")
    c.add_argument("--holdout-images", type=int, default=512, metavar="N", help="most test images the gate scores")
    c.add_argument("--tensorrt-version", default="10.3.0", help="TensorRT version in the calibration cache header "
                   "(default: 10.3.0, JetPack 6.2)")
    c.add_argument("--min-cosine", type=float, default=0.99, help="gate: least mean embedding cosine (default: 0.99)")
    c.add_argument("--max-auroc-change", type=float, default=0.01, help="gate: most |AUROC change| (default: 0.01)")
    c.add_argument("--max-float-nodes", type=int, default=8, help="most layers kept in float to pass the gate")
    c.add_argument("--batch-size", type=int, default=32)
    add_source_options(c)
    c.set_defaults(handler=_calibrate)
    return {"calibrate": c}
