"""``edgessl calibrate``'s config (importable without onnx). Each field is a command-line option;
its default is written here only."""

from __future__ import annotations

from dataclasses import dataclass

from edgessl.edge_runtime.config import option

CALIBRATION_TARGETS = ("tensorrt", "cpu", "both")
RANGE_METHODS = ("minmax", "percentile", "entropy")


@dataclass
class CalibrateConfig:
    bundle: str = option("", "bundle directory (from `edgessl export`)", metavar="BUNDLE", required=True)
    data: str | None = option(None, "dataset of normal images (default: the data the detector was fitted on)")
    target: str = option("both", "which INT8 model(s) to write (see above)", choices=CALIBRATION_TARGETS)
    method: str = option("entropy", "activation range method (entropy: TensorRT's KL histogram calibration)",
                         choices=RANGE_METHODS)
    num_images: int = option(256, "calibration images (at least 32)", metavar="N")
    normal_label: str | None = option(None, "normal class (default: the detector's)", metavar="L")
    percentile: float = option(99.99, "for --method percentile")
    holdout_images: int = option(512, "most test images the gate scores", metavar="N")
    tensorrt_version: str = option("10.3.0", "TensorRT version in the calibration cache header (10.3.0: JetPack 6.2)")
    min_cosine: float = option(0.99, "gate: least mean embedding cosine")
    max_auroc_change: float = option(0.01, "gate: most |AUROC change|")
    max_float_nodes: int = option(8, "most layers kept in float to pass the gate")
    batch_size: int = option(32, "images per inference call")
