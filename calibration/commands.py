"""CLI registration of ``calibrate``. The handler imports onnx/onnxruntime only when it runs."""

from __future__ import annotations

import argparse

from edgessl.edge_runtime.commands.options import Outcome, add_command, config_from_args

from .config import CalibrateConfig


def _calibrate(args: argparse.Namespace) -> Outcome:
    """Post-training INT8 from normal training images read through the runtime's preprocessing.
      --target tensorrt  symmetric int8 Q/DQ, per-channel weights (TensorRT 10/11, ORT TensorRT/CUDA)
      --target cpu       asymmetric uint8 activations (fast in ONNX Runtime on CPUs)
    The gate compares each INT8 model with fp32 on held-out images (embedding cosine, score
    Spearman, AUROC change); on failure the costliest layers stay in float and it retries.
    Each INT8 threshold is re-derived from held-out normal scores. Nothing is written unless
    every target passes.
    Example: edgessl calibrate --bundle bundles/digits --target both
    """
    import sys

    from .calibrate import calibrate_bundle
    from .gate import GateFailed
    from .report import summary_text

    cfg = config_from_args(CalibrateConfig, args)
    try:
        report = calibrate_bundle(cfg)
    except GateFailed as exc:
        print(summary_text(exc.report), end="", file=sys.stderr)
        raise
    text = (summary_text(report) + f"written into {cfg.bundle}: " +
            ", ".join(t["model"] for t in report["targets"].values()) +
            ", calibration_report.json, calibration_summary.txt")
    return Outcome(report, text)


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return add_command(
        sub, "calibrate", _calibrate, CalibrateConfig,
        help="INT8 Q/DQ models for a bundle (TensorRT and CPU), with an accuracy gate")
