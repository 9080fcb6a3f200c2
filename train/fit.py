"""``edgessl fit``: fit an anomaly detector on normal training images, then its threshold on
normal validation images.

Only normal images are ever read: the detector sees the ``train`` split's normal images, the
threshold the ``val`` split's (``open_dataset`` carves ``val`` from ``train`` when the source has
none). Writes ``RUN_DIR/detector/``:

    detector.json, detector.npz   the detector (``edge_runtime.detectors``)
    threshold.json                ``edge_runtime.thresholds.Threshold`` (fp32, this run's network)
    fit.json                      data, normal label, image counts, and the held-out images'
                                  ``val`` indices and raw scores (to re-derive INT8 thresholds)
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np

from edgessl.edge_runtime.data.datasets import ImageDataset, class_indices, open_dataset, resolve_label
from edgessl.edge_runtime.detectors import DETECTORS, Detector, load_detector
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.thresholds import fit_threshold, required_holdout

from .checkpoint import load_model, write_json
from .config import FitConfig, with_recorded_data
from .detectors import DEFAULT_K, fit_gaussian, fit_knn, fit_patch
from .detectors.coreset import check_coreset
from .distributed import pick_device
from .feature_model import FeatureModel
from .features import feature_batches
from .scoring import feature_model_for, score_dataset

DETECTOR_DIR = "detector"
PATCH_POOL = 32_768  # most patch feature vectors the coreset chooses from (a random subset per image beyond)


def normal_images(ds: ImageDataset, normal_label: str | None) -> tuple[ImageDataset, str | None]:
    """The normal images of ``ds`` and the normal class's name (None: unlabelled, all taken as normal).

    Without ``normal_label``, labelled data must have a single class in this split (MVTec's ``good``).
    """
    if normal_label is None:
        if not ds.labelled:
            return ds.subset(np.arange(len(ds))), None
        present = np.unique(ds.labels)
        if len(present) > 1:
            names = ", ".join(ds.class_names[i] for i in present)
            raise EdgesslError(f"{ds.source}: the {ds.split} split has several classes ({names}); "
                               "say which one is normal with --normal-label")
        normal = int(present[0])
    else:
        if not ds.labelled:
            raise EdgesslError(f"{ds.source}: the data is unlabelled, so --normal-label {normal_label} cannot "
                               "select images; drop --normal-label to take every image as normal")
        normal = resolve_label(ds, normal_label)
    subset = ds.subset(class_indices(ds, normal))
    if len(subset) == 0:
        raise EdgesslError(f"{ds.source}: no normal images (label {ds.class_names[normal]!r}) in the "
                           f"{ds.split} split; check --normal-label")
    return subset, ds.class_names[normal]


def collect_features(model: FeatureModel, ds: ImageDataset, spec, device, batch_size: int,
                     patch_pool: int = PATCH_POOL, seed: int = 0) -> dict[str, np.ndarray]:
    """The model's outputs for every image of ``ds``: ``embedding`` ``(N, D)`` and, with patches, a
    random sample of ``m = min(h * w, max(1, patch_pool // N))`` patch feature vectors per image,
    ``patches`` ``(N, m, C)`` (all of them when they fit in ``patch_pool``)."""
    rng = np.random.default_rng(seed)
    per_image = max(1, patch_pool // len(ds))
    out: dict[str, list[np.ndarray]] = {name: [] for name in model.output_names}
    for batch in feature_batches(model, ds, spec, device, batch_size):
        out["embedding"].append(batch["embedding"])
        if "patches" in batch:
            p = batch["patches"]
            flat = p.transpose(0, 2, 3, 1).reshape(len(p), -1, p.shape[1])  # (B, h*w, C)
            if flat.shape[1] > per_image:
                keep = np.stack([rng.choice(flat.shape[1], per_image, replace=False) for _ in range(len(p))])
                flat = np.take_along_axis(flat, keep[:, :, None], axis=1)
            out["patches"].append(flat)
    return {name: np.concatenate(parts) for name, parts in out.items()}


def fit_detector(kind: str, features: dict[str, np.ndarray], k: int = 0, coreset: int = 0, seed: int = 0) -> Detector:
    """Fit a detector of ``kind`` on ``collect_features`` output of normal images."""
    k = k or DEFAULT_K[kind]
    if kind == "gaussian":
        return fit_gaussian(features["embedding"])
    if kind == "knn":
        return fit_knn(features["embedding"], k, coreset, seed)
    patches = features["patches"]
    return fit_patch(patches.reshape(-1, patches.shape[-1]), k, coreset, seed)


def _check_options(cfg: FitConfig, n_train: int, n_holdout: int) -> None:
    """The cheap checks, before any feature is computed."""
    if cfg.detector not in DETECTORS:
        raise EdgesslError(f"unknown detector {cfg.detector!r}; choose one of {', '.join(DETECTORS)}")
    if cfg.detector == "gaussian" and (cfg.coreset or cfg.k):
        raise EdgesslError("--coreset and --k apply to the knn and patch detectors, not gaussian")
    need = required_holdout(cfg.target_fpr, cfg.confidence)
    if n_holdout < need:
        raise EdgesslError(
            f"the val split has {n_holdout} normal images; a false-positive rate of {cfg.target_fpr:g} at "
            f"{cfg.confidence:g} confidence needs at least {need}. Add normal images to the validation split, "
            "or raise --target-fpr (or lower --confidence)")
    if cfg.detector == "knn":
        check_coreset(cfg.coreset, n_train, "normal training images")


def fit_run(cfg: FitConfig) -> dict:
    """Fit, threshold and save the detector of ``cfg.run``; returns a JSON-able summary."""
    cfg = with_recorded_data(cfg)
    start = time.process_time()
    backbone, spec, _ = load_model(Path(cfg.run))
    device = pick_device(cfg.device)
    train_ds, label = normal_images(open_dataset(cfg.data, "train"), cfg.normal_label)
    holdout_ds, _ = normal_images(open_dataset(cfg.data, "val"), label if label is not None else cfg.normal_label)
    if cfg.max_images:
        train_ds = train_ds.subset(np.arange(min(cfg.max_images, len(train_ds))))
    _check_options(cfg, len(train_ds), len(holdout_ds))

    model = feature_model_for(backbone, DETECTORS[cfg.detector].inputs)
    feats = collect_features(model, train_ds, spec, device, cfg.batch_size, seed=cfg.seed)
    out = Path(cfg.run) / DETECTOR_DIR
    tmp = out.with_name(f".{DETECTOR_DIR}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fit_detector(cfg.detector, feats, cfg.k, cfg.coreset, cfg.seed).save(tmp)
        detector = load_detector(tmp)  # the threshold comes from exactly the files that ship
        holdout = score_dataset(backbone, detector, holdout_ds, spec, device, cfg.batch_size).raw_scores
        threshold = fit_threshold(holdout, cfg.target_fpr, cfg.confidence)
        threshold.save(tmp / "threshold.json")
        write_json(tmp / "fit.json", {
            "data": cfg.data, "normal_label": label, "detector": detector.kind, "params": detector.params(),
            "train_images": len(train_ds),
            "holdout": {"split": "val", "indices": [int(i) for i in holdout_ds.indices],
                        "names": [holdout_ds.name(i) for i in range(len(holdout_ds))],
                        "raw_scores": [float(s) for s in holdout]},
        })
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left behind when a step above failed
    return {"detector_dir": str(out), "detector": detector.kind, "params": detector.params(),
            "normal_label": label, "train_images": len(train_ds), "holdout_images": len(holdout_ds),
            "threshold": threshold.to_dict(), "cpu_seconds": round(time.process_time() - start, 2)}
