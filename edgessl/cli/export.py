"""``export``, ``build-engine`` and ``calibrate``: their options and handlers. Handlers import
torch, onnx, onnxruntime or TensorRT only when they run."""

from __future__ import annotations

import argparse
import sys

from edgessl.calibration.config import CALIBRATION_TARGETS, RANGE_METHODS, CalibrateConfig
from edgessl.export.config import ENGINE_PRECISIONS, EngineConfig, ExportConfig

from .options import Command, Opt, Outcome, config_from_args, selected_data, summary_lines
from .shared import BUNDLE_HELP, RUN_DIR, SELECTION


def _export(args: argparse.Namespace) -> Outcome:
    """Export RUN_DIR's network to model.onnx (dynamic batch), copy its detector and threshold,
    record preprocessing and provenance, verify ONNX Runtime against PyTorch on real images
    (features and scores within 1e-4 relative, no decision flips) and seal the bundle. Needs a
    fitted detector (`edgessl fit`), a classifier head (`edgessl finetune`: the graph adds logits
    and probabilities, the manifest the class names, --positive-class and the head's provenance)
    or both. Nothing is written when verification fails.
    Example: edgessl export --run runs/digits --out bundles/digits
    """
    from edgessl.export.bundle_writer import export_bundle

    cfg = config_from_args(ExportConfig, args)
    manifest = export_bundle(cfg)
    check = manifest["model"]["verification"]
    s = {"bundle": cfg.out, "outputs": manifest["model"]["outputs"],
         "verification": {"images": check["images"], "passed": check["passed"],
                          "rel": {n: v["rel"] for n, v in check["outputs"].items()},
                          "scores_rel": (check["scores"] or {}).get("rel"),
                          "maps_rel": (check.get("maps") or {}).get("rel"),
                          "decision_flips": check["decision_flips"]}}
    v = s["verification"]
    scored = "" if v["scores_rel"] is None else (  # a classifier head alone has no scores to check
        f", the graph's scores {v['scores_rel']:.2g}"
        + (f", maps {v['maps_rel']:.2g}" if v["maps_rel"] is not None else "")
        + f", {v['decision_flips'] or 0} decision flips")
    text = (f"edgessl export: {cfg.run} -> {cfg.out}, verified on {v['images']} images "
            f"(largest relative error {max(v['rel'].values()):.2g}{scored})")
    return Outcome(s, text)


EXPORT = Command(
    "export", _export, (ExportConfig,), (
        Opt("--run", "run directory with a fitted detector (`edgessl fit`), a classifier head (`edgessl finetune`) "
                     "or both", metavar=RUN_DIR, required=True),
        Opt("--out", "bundle directory to create", metavar="BUNDLE", required=True),
        Opt("--positive-class", "the classifier's class (name or index) that means abnormal", metavar="CLASS"),
        Opt("--data", "dataset to verify on (default: the data the detector was fitted on)"),
        Opt("--verify-images", "test images to verify on", metavar="N"),
        Opt("--opset", "ONNX opset, 17-20"),
        Opt("--force", "replace an existing bundle (only once the new one is verified)")),
    help="a run (backbone + fitted detector and/or classifier head) to a verified ONNX bundle")


def _build_engine(args: argparse.Namespace) -> Outcome:
    """Build a serialized TensorRT engine (TensorRT 10 or 11) on this device: fp16 from model.onnx,
    int8 and best from the Q/DQ model.int8-tensorrt.onnx (`edgessl calibrate --target tensorrt`).
    First the source model passes the TensorRT preflight (`edgessl bundle check`); after the
    build, the engine's outputs are compared with ONNX Runtime's on held-out images and its own
    threshold is derived from its scores. The engine is keyed by TensorRT version, GPU compute
    capability, precision, source model and DLA core (the runtime refuses it anywhere else) and
    kept in the bundle's sealed engines delta (engines/): a signed bundle stays signed. A bundle
    with a classifier head: the engine's class probabilities are also compared on labelled test
    images (accuracy change, argmax agreement); a head alone has no threshold.
    """
    from edgessl.export.engine_builder import build_engine

    entry = build_engine(config_from_args(EngineConfig, args))
    c = entry["comparison"]
    shown = {**entry, "embedding cosine vs ONNX Runtime": c["embedding_cosine_mean"],
             "threshold": (entry["threshold"] or {}).get("raw_threshold", "none (no detector)"),
             "accuracy change vs ONNX Runtime": c.get("accuracy_change"), "argmax agreement": c.get("argmax_agreement")}
    return Outcome(entry, summary_lines("edgessl build-engine: engine added to the bundle's engines delta", shown,
                                        ("file", "precision", "tensorrt_version", "compute_capability", "dla_core",
                                         "embedding cosine vs ONNX Runtime", "threshold",
                                         "accuracy change vs ONNX Runtime", "argmax agreement")))


BUILD_ENGINE = Command(
    "build-engine", _build_engine, (EngineConfig,), (
        Opt("--bundle", BUNDLE_HELP, metavar="BUNDLE", required=True),
        Opt("--precision", "engine precision", choices=ENGINE_PRECISIONS),
        Opt("--dla-core", "build for DLA core N (Jetson): a fixed batch of --opt-batch, GPU fallback on",
            metavar="N"),
        Opt("--max-batch", "largest batch of the profile (a GPU engine)", metavar="N"),
        Opt("--opt-batch", "batch the profile tunes for (a DLA engine's only batch)", metavar="N"),
        Opt("--workspace-mb", "builder workspace limit in MiB", metavar="N"),
        Opt("--timing-cache", "read and update this TensorRT timing cache", metavar="FILE"),
        Opt("--data", "dataset the engine is checked and thresholded on (default: the data the detector was "
                      "fitted on, or the classifier trained on)"),
        Opt("--holdout-images", "most test images the engine is checked on", metavar="N"),
        Opt("--min-cosine", "least mean cosine of each output against ONNX Runtime"),
        Opt("--max-accuracy-drop", "a classifier bundle: most accuracy the engine may lose against ONNX Runtime")),
    help="a bundle's ONNX to a TensorRT engine recorded in the manifest (needs TensorRT + GPU)")


def _calibrate(args: argparse.Namespace) -> Outcome:
    """Post-training INT8 from normal training images read through the runtime's preprocessing.
      --target tensorrt  symmetric int8 Q/DQ, per-channel weights (TensorRT 10/11, ORT TensorRT/CUDA)
      --target cpu       asymmetric uint8 activations (fast in ONNX Runtime on CPUs)
    The gate compares each INT8 model with fp32 on held-out images (embedding cosine, score
    Spearman, AUROC change; a classifier bundle: accuracy and positive-class AUROC change on
    held-out labelled images); on failure the costliest layers stay in float and it retries.
    Each INT8 threshold is re-derived from held-out normal scores (a bundle with no detector has
    none and is calibrated on training images of every class). Nothing is written unless every
    target passes.
    Example: edgessl calibrate --bundle bundles/digits --target both
    """
    from edgessl.calibration.calibrate import calibrate_bundle
    from edgessl.calibration.gate import GateFailed
    from edgessl.calibration.gate_report import summary_text

    cfg = config_from_args(CalibrateConfig, args, data=selected_data(args))
    try:
        report = calibrate_bundle(cfg)
    except GateFailed as exc:
        print(summary_text(exc.report), end="", file=sys.stderr)
        raise
    text = (summary_text(report) + f"written into {cfg.bundle}: " +
            ", ".join(t["model"] for t in report["targets"].values()) +
            ", calibration_report.json, calibration_summary.txt")
    return Outcome(report, text)


CALIBRATE = Command(
    "calibrate", _calibrate, (CalibrateConfig,), (
        Opt("--bundle", BUNDLE_HELP, metavar="BUNDLE", required=True),
        Opt("--data", "dataset of normal images (default: the data the detector was fitted on)"),
        Opt("--target", "which INT8 model(s) to write (see above)", choices=CALIBRATION_TARGETS),
        Opt("--method", "activation range method (entropy: TensorRT's KL histogram calibration)",
            choices=RANGE_METHODS),
        Opt("--num-images", "calibration images (at least 32)", metavar="N"),
        Opt("--normal-label", "normal class (default: the detector's)", metavar="L"),
        Opt("--percentile", "for --method percentile"),
        Opt("--holdout-images", "most test images the gate scores", metavar="N"),
        Opt("--min-cosine", "gate: least mean embedding cosine"),
        Opt("--max-auroc-change", "gate: most |AUROC change| (the detector's; the positive class's)"),
        Opt("--max-accuracy-drop", "gate, a classifier bundle: most accuracy lost against fp32"),
        Opt("--max-float-nodes", "most layers kept in float to pass the gate"),
        Opt("--batch-size", "images per inference call"),
        *SELECTION),
    help="INT8 Q/DQ models for a bundle (TensorRT and CPU), with an accuracy gate")

COMMANDS = (EXPORT, BUILD_ENGINE, CALIBRATE)
