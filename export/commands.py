"""CLI registration of ``export`` and ``build-engine``. Handlers import torch/onnx/tensorrt only when run."""

from __future__ import annotations

import argparse
import json

from edgessl.edge_runtime.commands.options import config_from_args


def _export(args: argparse.Namespace) -> int:
    from .bundle_writer import ExportConfig, export_bundle

    manifest = export_bundle(config_from_args(ExportConfig, args))
    check = manifest["model"]["verification"]
    print(json.dumps({"bundle": args.out, "outputs": manifest["model"]["outputs"],
                      "verification": {"images": check["images"], "passed": check["passed"],
                                       "rel": {n: v["rel"] for n, v in check["outputs"].items()},
                                       "scores_rel": (check["scores"] or {}).get("rel"),
                                       "decision_flips": check["decision_flips"]}}, indent=2))
    return 0


def _build_engine(args: argparse.Namespace) -> int:
    from .engine_builder import EngineConfig, build_engine

    entry = build_engine(config_from_args(EngineConfig, args))
    print(json.dumps(entry, indent=2))
    return 0


def register(sub) -> dict[str, argparse.ArgumentParser]:
    e = sub.add_parser(
        "export", help="a run (backbone + fitted detector) to a verified ONNX bundle",
        description="Export RUN_DIR's network to model.onnx (opset 17, dynamic batch), copy its detector and "
                    "threshold, record preprocessing and provenance, verify ONNX Runtime against PyTorch on real "
                    "images (features and scores within 1e-4 relative, no decision flips) and seal the bundle. "
                    "Needs a fitted detector (`edgessl fit`). Nothing is written when verification fails.\n"
                    "Example: edgessl export --run runs/digits --out bundles/digits")
    e.add_argument("--run", required=True, metavar="RUN_DIR")
    e.add_argument("--out", required=True, metavar="BUNDLE", help="bundle directory to create")
    e.add_argument("--data", default=None, help="images to verify on (default: the data the detector was fitted on)")
    e.add_argument("--verify-images", type=int, default=64, metavar="N", help="test images to verify on (default: 64)")
    e.add_argument("--opset", type=int, default=17, help="ONNX opset, 17-20 (default: 17)")
    e.add_argument("--force", action="store_true", help="replace an existing bundle (only once the new one is verified)")
    e.set_defaults(handler=_export)

    b = sub.add_parser(
        "build-engine", help="a bundle's ONNX to a TensorRT engine recorded in the manifest (needs TensorRT + GPU)",
        description="Build a serialized TensorRT engine (TensorRT 10 or 11) for this GPU: fp16 from model.onnx, int8 "
                    "and best from the Q/DQ model.int8-tensorrt.onnx (`edgessl calibrate --target tensorrt`). "
                    "The engine is keyed by TensorRT version, GPU compute capability, precision and source model; "
                    "the runtime refuses it anywhere else.")
    b.add_argument("--bundle", required=True, metavar="BUNDLE")
    b.add_argument("--precision", default="int8", choices=("fp16", "int8", "best"), help="default: int8")
    b.add_argument("--dla-core", type=int, default=None, metavar="N", help="build for DLA core N (Jetson), GPU fallback on")
    b.add_argument("--max-batch", type=int, default=16, metavar="N", help="largest batch of the profile (default: 16)")
    b.add_argument("--opt-batch", type=int, default=1, metavar="N", help="batch the profile tunes for (default: 1)")
    b.add_argument("--workspace-mb", type=int, default=1024, metavar="N", help="builder workspace limit (default: 1024)")
    b.add_argument("--timing-cache", default=None, metavar="FILE", help="read and update this TensorRT timing cache")
    b.set_defaults(handler=_build_engine)
    return {"export": e, "build-engine": b}
