"""``edgessl calibrate``'s config (importable without onnx): a plain dataclass whose defaults are
written here only (the CLI reads them from here)."""

from __future__ import annotations

from dataclasses import dataclass

CALIBRATION_TARGETS = ("tensorrt", "cpu", "both")
RANGE_METHODS = ("minmax", "percentile", "entropy")


@dataclass
class CalibrateConfig:
    """INT8 models of ``bundle`` for ``target`` from ``num_images`` normal images of ``data`` (None:
    the data the detector was fitted on; ``normal_label`` None: the detector's), activation ranges
    by ``method`` (``percentile`` at ``percentile``); the gate scores at most ``holdout_images``
    test images and passes with a mean embedding cosine of at least ``min_cosine``, an AUROC
    change of at most ``max_auroc_change`` and (a classifier bundle) an accuracy drop of at most
    ``max_accuracy_drop``, keeping at most ``max_float_nodes`` layers in float."""

    bundle: str = ""
    data: str | None = None
    target: str = "both"
    method: str = "entropy"
    num_images: int = 256
    normal_label: str | None = None
    percentile: float = 99.99
    holdout_images: int = 512
    min_cosine: float = 0.99
    max_auroc_change: float = 0.01
    max_accuracy_drop: float = 0.01
    max_float_nodes: int = 8
    batch_size: int = 32
