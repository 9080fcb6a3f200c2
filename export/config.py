"""The export-side configs: plain dataclasses whose defaults are written here only (the CLI reads
them from here). Importable without torch, onnx or TensorRT."""

from __future__ import annotations

from dataclasses import dataclass, field

ENGINE_PRECISIONS = ("fp16", "int8", "best")
TENSORRT_LINES = ("10", "11")  # the TensorRT lines the preflight knows (tensorrt_preflight.RULESETS)
CHECK_TARGETS = ("tensorrt",)


@dataclass
class ExportConfig:
    """``run`` (with a fitted detector, a fine-tuned classifier head or both) to the bundle ``out``,
    verified on ``verify_images`` test images of ``data`` (None: the data the detector was fitted
    on, else the run's); ``positive_class``: the head's class (name or index) that means abnormal;
    ``force`` replaces an existing bundle once the new one is verified."""

    run: str = ""
    out: str = ""
    positive_class: str | None = None
    data: str | None = None
    verify_images: int = 64
    opset: int = 17
    force: bool = False


@dataclass
class EngineConfig:
    """A TensorRT engine of ``bundle`` at ``precision`` (``ENGINE_PRECISIONS``); ``dla_core``: build
    for that DLA core (Jetson), GPU fallback on; the profile's batches (``engine_batches``); the
    builder's workspace limit in MiB; an optional timing cache file to read and update. The engine
    is compared with ONNX Runtime on held-out images of ``data`` (None: the data the detector was
    fitted on, or the classifier trained on; at most ``holdout_images`` test images beside the
    held-out normals) and refused below a mean embedding cosine of ``min_cosine`` or, with a
    classifier head, an accuracy drop beyond ``max_accuracy_drop``; with a detector, its threshold
    is re-derived from its own scores."""

    bundle: str = ""
    precision: str = "int8"
    dla_core: int | None = None
    max_batch: int = 16
    opt_batch: int = 1
    workspace_mb: int = 1024
    timing_cache: str | None = None
    data: str | None = None
    holdout_images: int = 256
    min_cosine: float = 0.99
    max_accuracy_drop: float = 0.01


def engine_batches(cfg: EngineConfig) -> tuple[int, int, int]:
    """The profile's (min, opt, max) batch: 1 to ``max_batch`` on a GPU; on a DLA core, which takes no
    dynamic dimension, ``opt_batch`` fixed (min = opt = max)."""
    if cfg.dla_core is not None:
        return cfg.opt_batch, cfg.opt_batch, cfg.opt_batch
    return 1, cfg.opt_batch, cfg.max_batch


@dataclass
class CheckConfig:
    """A static check of ``bundle``'s models against ``target``'s rules (``tensorrt``: TensorRT's
    ONNX parser, for the ``tensorrt`` lines of ``TENSORRT_LINES``), with ``build-engine``'s default
    optimization profile."""

    bundle: str = ""
    target: str = "tensorrt"
    tensorrt: list[str] = field(default_factory=lambda: list(TENSORRT_LINES))
