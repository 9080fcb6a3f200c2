"""``edgessl fit``: fit an anomaly detector on normal training images, and its threshold on
cross-fitted scores of the same images.

Only normal images are ever read: every normal image of the ``train`` and ``val`` splits. The
threshold's held-out scores come from K-fold cross-fitting: the images are split into K folds
(seeded); a detector fitted on K-1 folds scores the remaining one, so every image has a score from
a detector that never saw it. The shipped detector is fitted on all of them. When the images are
too few for ``--target-fpr`` at ``--confidence``, the threshold uses the tightest rate they support
and records both (``--strict`` refuses instead; ``edge_runtime.thresholds`` states the rule).
Writes ``RUN_DIR/detector/``:

    detector.json, detector.npz   the detector (``edge_runtime.detectors``)
    threshold.json                ``edge_runtime.thresholds.Threshold`` (fp32, this run's network)
    fit.json                      data, normal label, image counts, and per split the held-out images'
                                  indices and cross-fitted raw scores (to re-derive INT8 thresholds)
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from edgessl.edge_runtime.data.datasets import class_indices, open_dataset, resolve_label
from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.detectors import DETECTORS, Detector, load_detector
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.thresholds import Threshold, fit_threshold, required_holdout

from . import precision
from .checkpoint import load_model, write_json
from .config import FitConfig
from .detectors import combined_scores, fit_combined, fit_gaussian, fit_knn, fit_patch
from .detectors.combined import PARTS
from .detectors.coreset import check_coreset
from .detectors.gaussian import ledoit_wolf_delta
from .distributed import pick_device
from .features import bank_features, collect_outputs, feature_model_for
from .run_records import DETECTOR_DIR, detector_dir, with_recorded_data


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


def detector_options(cfg: FitConfig, kind: str) -> dict:
    """The options ``cfg`` gives (``k``, ``coreset``, ``top``) that a detector of ``kind`` takes; the
    others keep the fitting function's defaults (``detectors/``)."""
    takes = {"gaussian": (), "knn": ("k", "coreset"), "patch": ("k", "coreset", "top")}[kind]
    return {name: getattr(cfg, name) for name in takes if getattr(cfg, name) is not None}


def fit_detector(kind: str, features: dict[str, np.ndarray], seed: int = 0, delta: float | None = None,
                 **options: int) -> Detector:
    """Fit a single detector of ``kind`` on ``bank_features`` of normal images (``delta``: the
    gaussian's shrinkage; ``options``: ``detector_options``)."""
    if kind == "gaussian":
        return fit_gaussian(features["embedding"], delta)
    if kind == "knn":
        return fit_knn(features["embedding"], seed=seed, **options)
    return fit_patch(features["patches"], seed=seed, **options)


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """A seeded assignment of ``n`` images to ``folds`` folds of sizes differing by at most one."""
    return np.random.default_rng(seed).permutation(np.arange(n) % folds)


def base_kinds(detector: str) -> tuple[str, ...]:
    """The single detectors ``detector`` is made of (itself, or the combined detector's parts)."""
    return PARTS if detector == "combined" else (detector,)


def crossfit_scores(cfg: FitConfig, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each image's raw score under a detector of each of ``base_kinds(cfg.detector)`` fitted on
    the other folds (``cfg.folds`` fits each). A gaussian fold detector takes the shrinkage of all
    the images, the shipped detector's (``detectors/gaussian.py``: its distances' scale depends on it)."""
    n = len(outputs["embedding"])
    folds = fold_ids(n, cfg.folds, cfg.seed)
    out = {}
    for kind in base_kinds(cfg.detector):
        delta = ledoit_wolf_delta(outputs["embedding"]) if kind == "gaussian" else None
        scores = np.empty(n, np.float64)
        for f in range(cfg.folds):
            held, kept = folds == f, folds != f
            detector = fit_detector(kind, bank_features({k: v[kept] for k, v in outputs.items()}, seed=cfg.seed),
                                    cfg.seed, delta, **detector_options(cfg, kind))
            scores[held] = _score(detector, {k: v[held] for k, v in outputs.items()})
        out[kind] = scores
    return out


def held_out_scores(cfg: FitConfig, parts: dict[str, np.ndarray]) -> np.ndarray:
    """The threshold's held-out scores of ``cfg.detector`` from its parts' (``crossfit_scores``)."""
    return combined_scores(list(parts.values())) if cfg.detector == "combined" else parts[cfg.detector]


def fit_shipped(cfg: FitConfig, outputs: dict[str, np.ndarray], parts: dict[str, np.ndarray]) -> Detector:
    """The detector that ships, fitted on every normal image (a combined one standardised by ``parts``)."""
    bank = bank_features(outputs, seed=cfg.seed)
    fitted = [fit_detector(kind, bank, cfg.seed, **detector_options(cfg, kind)) for kind in base_kinds(cfg.detector)]
    return fit_combined(fitted, list(parts.values())) if cfg.detector == "combined" else fitted[0]


def _score(detector: Detector, outputs: dict[str, np.ndarray], block: int = 256) -> np.ndarray:
    n = len(outputs["embedding"])
    return np.concatenate([detector.score({k: v[i : i + block] for k, v in outputs.items()}).raw_scores
                           for i in range(0, n, block)])


def _check_options(cfg: FitConfig, n_images: int) -> None:
    """The cheap checks, before any feature is computed."""
    if cfg.detector not in DETECTORS:
        raise EdgesslError(f"unknown detector {cfg.detector!r}; choose one of {', '.join(DETECTORS)}")
    if cfg.detector == "gaussian" and (cfg.coreset is not None or cfg.k is not None):
        raise EdgesslError("--coreset and --k apply to the knn and patch detectors, not gaussian")
    if cfg.top is not None and cfg.detector not in ("patch", "combined"):
        raise EdgesslError("--top applies to the patch detector (alone or in the combined one) only")
    if cfg.folds < 2:
        raise EdgesslError(f"--folds must be at least 2 (got {cfg.folds})")
    if n_images < cfg.folds:
        raise EdgesslError(f"{n_images} normal images are fewer than --folds {cfg.folds}; lower --folds or add "
                           "normal images")
    need = required_holdout(cfg.target_fpr, cfg.confidence)
    if cfg.strict and n_images < need:
        raise EdgesslError(
            f"{n_images} normal images are too few for a false-positive rate of {cfg.target_fpr:g} at "
            f"{cfg.confidence:g} confidence (--strict): the rule needs at least {need}. Add normal images, "
            "or raise --target-fpr (or lower --confidence)")
    if "knn" in base_kinds(cfg.detector) and cfg.coreset is not None:
        check_coreset(cfg.coreset, n_images - -(-n_images // cfg.folds), "normal training images of a fold")


def _say_loosened(threshold: Threshold) -> None:
    if threshold.requested_target_fpr is not None:
        print(f"edgessl fit: {threshold.n_holdout} normal images support a false-positive rate of "
              f"{threshold.target_fpr:.4g} at {threshold.confidence:g} confidence, not the requested "
              f"{threshold.requested_target_fpr:g}; using {threshold.target_fpr:.4g} (--strict refuses instead)",
              file=sys.stderr)


def fit_run(cfg: FitConfig) -> dict:
    """Fit, threshold and save the detector of ``cfg.run``; returns a JSON-able summary."""
    cfg = with_recorded_data(cfg)
    start = time.process_time()
    backbone, spec, meta = load_model(Path(cfg.run))
    device = pick_device(cfg.device)
    precision.select(cfg.torch_precision, shipped=True)
    train_ds, label = normal_images(open_dataset(cfg.data, "train"), cfg.normal_label)
    val_ds, _ = normal_images(open_dataset(cfg.data, "val"), label if label is not None else cfg.normal_label)
    if cfg.max_images:  # the first N, as a view of the split itself (so fit.json's indices are the split's)
        train_ds = open_dataset(cfg.data, "train").subset(train_ds.indices[: cfg.max_images])
    parts = [train_ds, val_ds]
    n_images = sum(len(p) for p in parts)
    _check_options(cfg, n_images)

    model = feature_model_for(backbone, DETECTORS[cfg.detector].inputs)
    outputs = collect_outputs(model, parts, spec, device, cfg.batch_size)
    part_scores = crossfit_scores(cfg, outputs)
    held_out = held_out_scores(cfg, part_scores)
    threshold = fit_threshold(held_out, cfg.target_fpr, cfg.confidence, strict=cfg.strict)
    _say_loosened(threshold)
    out = detector_dir(cfg.run)
    tmp = out.with_name(f".{DETECTOR_DIR}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        fit_shipped(cfg, outputs, part_scores).save(tmp)
        detector = load_detector(tmp)  # what ships
        threshold.save(tmp / "threshold.json")
        bounds = np.cumsum([0] + [len(p) for p in parts])
        write_json(tmp / "fit.json", {
            "data": cfg.data, "normal_label": label, "detector": detector.kind, "params": detector.params(),
            "train_images": n_images,
            "holdout": {"method": "cross-fit", "folds": cfg.folds, "seed": cfg.seed, "parts": [
                {"split": p.split, "indices": [int(i) for i in p.indices],
                 "names": [p.name(i) for i in range(len(p))],
                 "raw_scores": [float(s) for s in held_out[bounds[j] : bounds[j + 1]]]}
                for j, p in enumerate(parts) if len(p)]},
        })
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # only left behind when a step above failed
    return {"detector_dir": str(out), "detector": detector.kind, "params": detector.params(),
            "normal_label": label, "train_images": n_images, "holdout_images": len(held_out),
            "folds": cfg.folds, "threshold": threshold.to_dict(),
            "cpu_seconds": round(time.process_time() - start, 2)}
