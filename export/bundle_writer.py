"""``edgessl export``: a run directory (backbone + fitted detector + threshold, and/or a fine-tuned
classifier head) to a verified bundle.

The model computes the detector's score (and map) itself (``scoring_graph``), verified against the
numpy detector. The model must also pass the TensorRT preflight (``tensorrt_preflight``: TensorRT 10 and 11,
``build-engine``'s default profile), since engines are built from it on the device.

The bundle is assembled by ``update_bundle`` (``create``) in a hidden sibling directory, verified,
sealed, and only then renamed to ``BUNDLE``: a crash or a failed verification leaves no bundle, or
the old bundle untouched (``--force`` replaces an existing bundle only after the new one is complete).

A run with a fitted detector exports it with its threshold; a fine-tuned run (``edgessl finetune``)
exports its classifier head in the graph (``logits``, ``probabilities``; ``classifier``); a run
with both exports both. A run with neither is refused (run ``edgessl fit`` or ``edgessl finetune``).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from edgessl import __version__
from edgessl.edge_runtime.files import file_sha256
from edgessl.edge_runtime.bundle_update import check_new, update_bundle
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.detectors import load_detector
from edgessl.edge_runtime.engines import engine_profile
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.outputs import refuse_overlap
from edgessl.edge_runtime.preprocess import PreprocessSpec, preprocess_batch
from edgessl.edge_runtime.thresholds import Threshold
from edgessl.edge_runtime.timestamps import utc_now

from edgessl.train.run_records import detector_dir, fit_record, recorded_data

from .config import TENSORRT_LINES, EngineConfig, ExportConfig, engine_batches
from .tensorrt_preflight import preflight

DETECTOR_FILES = ("detector.json", "detector.npz", "fit.json")
MODEL_FILE = "model.onnx"


def verification_images(source: str, spec: PreprocessSpec, n: int) -> tuple[np.ndarray, str]:
    """``n`` real images of ``source`` (test split, evenly spaced over it), preprocessed by the runtime."""
    if n < 1:
        raise EdgesslError("--verify-images must be at least 1")
    try:
        ds = open_dataset(source, "test")
    except EdgesslError as exc:
        raise EdgesslError(f"cannot read images to verify the export ({exc}); pass --data SOURCE") from None
    idx = np.unique(np.linspace(0, len(ds) - 1, min(n, len(ds))).round().astype(int))
    return preprocess_batch((ds.image(int(i)) for i in idx), spec), f"{source}:test"


def read_run(run: Path):
    """The run's backbone, spec, metadata, detector, threshold and fit record (None, None, {} for a
    fine-tuned run that has no detector folder), or a clear refusal."""
    from edgessl.train.checkpoint import load_model

    backbone, spec, meta = load_model(run)
    det_dir = detector_dir(run)
    if "head" in meta and not det_dir.exists():
        return backbone, spec, meta, None, None, {}
    missing = [f for f in ("detector.json", "detector.npz", "threshold.json") if not (det_dir / f).is_file()]
    if missing:
        raise EdgesslError(f"{run}: no fitted detector ({', '.join(missing)} missing in {det_dir}); "
                           f"run `edgessl fit --run {run} --data SOURCE` (or `edgessl finetune`) first")
    detector = load_detector(det_dir)
    threshold = Threshold.load(det_dir / "threshold.json")
    return backbone, spec, meta, detector, threshold, fit_record(run)


def _provenance(run: Path, meta: dict, fit: dict) -> dict:
    import onnx
    import onnxruntime
    import torch
    import yaml

    config = run / "config.yaml"
    return {
        "tool_version": __version__,
        "run_dir": str(run.resolve()),
        "checkpoint_sha256": file_sha256(run / "model.safetensors"),
        "detector_sha256": {f: file_sha256(detector_dir(run) / f) for f in DETECTOR_FILES
                            if (detector_dir(run) / f).is_file()},
        "training": {k: meta.get(k) for k in ("method", "backbone", "data", "epochs_done", "tool_version")},
        "training_config": yaml.safe_load(config.read_text()) if config.is_file() else None,
        "fit": {k: fit.get(k) for k in ("data", "normal_label", "detector", "params", "train_images")},
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
    }


def export_bundle(cfg: ExportConfig) -> dict:
    """Export, verify and seal; returns the manifest. Raises ``EdgesslError`` and writes nothing on failure."""
    from edgessl.train.classifier_model import ClassifierModel
    from edgessl.train.feature_model import FeatureModel

    from .classifier import classifier_section, read_head
    from .onnx_export import check_opset, export_onnx
    from .scoring_graph import SCORING_RECORD, add_scoring
    from .verify import verify_export

    run, out = Path(cfg.run), Path(cfg.out)
    check_opset(cfg.opset)
    refuse_overlap(out, "--out", [run, *([cfg.data] if cfg.data and Path(cfg.data).exists() else [])])
    check_new(out, cfg.force)  # before the slow part
    backbone, spec, meta, detector, threshold, fit = read_run(run)
    head = read_head(run, meta, backbone.feature_dim, cfg.positive_class)
    source = cfg.data or recorded_data(run, detector_first=True)
    batch, verified_on = verification_images(source, spec, cfg.verify_images)

    def write(staging: Path, _: dict) -> dict:
        features = FeatureModel(backbone, with_patches=detector is not None and "patches" in detector.inputs)
        model = features if head is None else ClassifierModel(features, head.layer)
        model_info = export_onnx(model, spec, staging / MODEL_FILE, cfg.opset)
        if detector is not None:  # a classifier head alone scores nothing
            model_info["outputs"].update(add_scoring(staging / MODEL_FILE, detector))
            model_info["scoring"] = SCORING_RECORD
        check = verify_export(model, staging / MODEL_FILE, batch, detector, threshold)
        if not check.passed:
            raise EdgesslError(f"the exported model (ONNX Runtime) does not match PyTorch and the numpy detector on "
                               f"{check.describe()}; bundle not written")
        preflight(staging / MODEL_FILE, TENSORRT_LINES, engine_profile({"model": model_info},
                                                                      engine_batches(EngineConfig())))
        fp32 = {"model": MODEL_FILE, "dtype": "float32",
                "tensorrt_preflight": {"passed": True, "tensorrt": list(TENSORRT_LINES)}}
        manifest = {
            "tool_version": __version__,
            "created": utc_now(),
            "model": {**model_info, "verification": {**check.to_dict(), "images_from": verified_on}},
            "preprocess": spec.to_dict(),
            "precisions": {"fp32": fp32},
            "provenance": _provenance(run, meta, fit),
        }
        if head is not None:
            manifest["classifier"] = classifier_section(head)
        if detector is None:
            return manifest
        (staging / "detector").mkdir()
        for f in DETECTOR_FILES:
            if (detector_dir(run) / f).is_file():
                shutil.copy2(detector_dir(run) / f, staging / "detector" / f)
        fp32["threshold_from"] = ("edgessl fit: PyTorch scores of the train+val normals, each from a detector "
                                  "cross-fitted without it")
        manifest["detector"] = {
            "kind": detector.kind, "directory": "detector", "inputs": list(detector.inputs),
            "has_maps": bool(detector.has_maps), "params": detector.params(), "normal_label": fit.get("normal_label"),
            "data": fit.get("data"),
            "normalisation": "normalised = (raw - offset) / scale; anomalous iff raw >= raw_threshold"}
        manifest["thresholds"] = {"fp32": threshold.to_dict()}
        return manifest

    return update_bundle(out, write, create=True, replace=cfg.force).manifest
