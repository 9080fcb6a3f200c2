"""The export-side commands' configs (torch-free, so ``edgessl --help`` imports no torch or onnx).
Each field is a command-line option; its default is written here only."""

from __future__ import annotations

from dataclasses import dataclass

from edgessl.edge_runtime.config import option

ENGINE_PRECISIONS = ("fp16", "int8", "best")


@dataclass
class ExportConfig:
    run: str = option("", "run directory with a fitted detector (`edgessl fit`)", metavar="RUN_DIR", required=True)
    out: str = option("", "bundle directory to create", metavar="BUNDLE", required=True)
    data: str | None = option(None, "dataset to verify on (default: the data the detector was fitted on)")
    verify_images: int = option(64, "test images to verify on", metavar="N")
    opset: int = option(17, "ONNX opset, 17-20")
    force: bool = option(False, "replace an existing bundle (only once the new one is verified)")


@dataclass
class EngineConfig:
    bundle: str = option("", "bundle directory (from `edgessl export`)", metavar="BUNDLE", required=True)
    precision: str = option("int8", "engine precision", choices=ENGINE_PRECISIONS)
    dla_core: int | None = option(None, "build for DLA core N (Jetson), GPU fallback on", metavar="N")
    max_batch: int = option(16, "largest batch of the profile", metavar="N")
    opt_batch: int = option(1, "batch the profile tunes for", metavar="N")
    workspace_mb: int = option(1024, "builder workspace limit", metavar="N")
    timing_cache: str | None = option(None, "read and update this TensorRT timing cache", metavar="FILE")
