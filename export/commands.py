"""CLI registration of ``export`` and ``build-engine``. Handlers import torch/onnx/tensorrt only when run."""

from __future__ import annotations

import argparse

from edgessl.edge_runtime.commands.options import Outcome, add_command, config_from_args, summary_lines

from .config import EngineConfig, ExportConfig


def _export(args: argparse.Namespace) -> Outcome:
    """Export RUN_DIR's network to model.onnx (opset 17, dynamic batch), copy its detector and
    threshold, record preprocessing and provenance, verify ONNX Runtime against PyTorch on real
    images (features and scores within 1e-4 relative, no decision flips) and seal the bundle. Needs
    a fitted detector (`edgessl fit`). Nothing is written when verification fails.
    Example: edgessl export --run runs/digits --out bundles/digits
    """
    from .bundle_writer import export_bundle

    cfg = config_from_args(ExportConfig, args)
    manifest = export_bundle(cfg)
    check = manifest["model"]["verification"]
    s = {"bundle": cfg.out, "outputs": manifest["model"]["outputs"],
         "verification": {"images": check["images"], "passed": check["passed"],
                          "rel": {n: v["rel"] for n, v in check["outputs"].items()},
                          "scores_rel": (check["scores"] or {}).get("rel"),
                          "decision_flips": check["decision_flips"]}}
    v = s["verification"]
    text = (f"edgessl export: {cfg.run} -> {cfg.out}, verified on {v['images']} images "
            f"(largest relative error {max(v['rel'].values()):.2g}, scores {v['scores_rel'] or 0:.2g}, "
            f"{v['decision_flips']} decision flips)")
    return Outcome(s, text)


def _build_engine(args: argparse.Namespace) -> Outcome:
    """Build a serialized TensorRT engine (TensorRT 10 or 11) for this GPU: fp16 from model.onnx, int8
    and best from the Q/DQ model.int8-tensorrt.onnx (`edgessl calibrate --target tensorrt`). The
    engine is keyed by TensorRT version, GPU compute capability, precision and source model; the
    runtime refuses it anywhere else.
    """
    from .engine_builder import build_engine

    entry = build_engine(config_from_args(EngineConfig, args))
    return Outcome(entry, summary_lines("edgessl build-engine: engine recorded in the manifest", entry,
                                        ("file", "precision", "tensorrt_version", "compute_capability")))


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return {
        **add_command(sub, "export", _export, ExportConfig,
                      help="a run (backbone + fitted detector) to a verified ONNX bundle"),
        **add_command(sub, "build-engine", _build_engine, EngineConfig,
                      help="a bundle's ONNX to a TensorRT engine recorded in the manifest (needs TensorRT + GPU)"),
    }
