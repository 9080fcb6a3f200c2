"""``edgessl evaluate --bundle``: anomaly metrics of a bundle, computed through the runtime.

The test split of ``data`` goes through ``Pipeline`` exactly as on the device (same
preprocessing, backend, precision, detector and threshold); the metrics use the same numpy
functions as ``evaluate --run``: image ``auroc``, ``aupr``, ``f1_max``, ``fpr_at_threshold`` /
``tpr_at_threshold`` at the bundle's threshold for that precision, and ``pixel_auroc`` when the
data has ground-truth masks and the detector gives maps (both at the model input's resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .datasets import ImageDataset, open_dataset, resolve_label
from .errors import EdgesslError
from .heatmaps import mask_at_input
from .metrics import aupr, auroc, f1_max, pixel_auroc, rates_at_threshold
from .pipeline import Pipeline
from .prefetch import Prefetcher
from .streams import DatasetSource


@dataclass
class BundleEvalConfig:
    bundle: str = ""
    data: str = "digits"
    normal_label: str | None = None
    ignore_labels: list[str] = field(default_factory=list)
    precision: str = "fp32"
    backend: str = "auto"
    batch_size: int = 64


def _without(ds: ImageDataset, names: list[str]) -> ImageDataset:
    if not names:
        return ds
    ignored = [resolve_label(ds, n) for n in names]
    return ds.subset(np.flatnonzero(~np.isin(ds.labels, ignored)))


def _normal_label(cfg: BundleEvalConfig, pipe: Pipeline, ds: ImageDataset) -> int:
    label = cfg.normal_label
    if label is None:
        label = pipe.bundle.manifest.get("detector", {}).get("normal_label")
    if label is None:
        raise EdgesslError("say which class is normal with --normal-label (the bundle does not record it)")
    return resolve_label(ds, label)


def score_dataset(pipe: Pipeline, ds: ImageDataset, batch_size: int = 64, with_maps: bool = False):
    """Raw scores, decisions and (optionally) model-resolution maps of every image of ``ds``.

    An image that cannot be scored raises ``EdgesslError``: evaluation needs them all."""
    raw = np.empty(len(ds), np.float64)
    flagged = np.zeros(len(ds), bool)
    maps: list[np.ndarray | None] = [None] * len(ds)
    source = DatasetSource(ds.source, ds)
    for batch in Prefetcher(source, lambda f: pipe.prepare(f.image), batch_size):
        bad = next((it for it in batch if it.error), None)
        if bad is not None:
            raise EdgesslError(f"cannot evaluate: {bad.error}")
        results = pipe.score_prepared([it.prepared for it in batch], map_space="model")
        for it, r in zip(batch, results):
            raw[it.frame.index], flagged[it.frame.index] = r.raw_score, r.is_anomaly
            if with_maps:
                maps[it.frame.index] = r.anomaly_map
    return raw, flagged, maps


def evaluate_bundle(cfg: BundleEvalConfig) -> dict:
    """The metrics above as a JSON-able dict."""
    pipe = Pipeline.load(cfg.bundle, backend=cfg.backend, precision=cfg.precision)
    ds = _without(open_dataset(cfg.data, "test"), cfg.ignore_labels)
    if not ds.labelled:
        raise EdgesslError(f"{cfg.data}: evaluation needs a labelled test split")
    normal = _normal_label(cfg, pipe, ds)
    with_maps = ds.has_masks and pipe.detector.has_maps
    raw, flagged, maps = score_dataset(pipe, ds, cfg.batch_size, with_maps)
    anomalous = ds.labels != normal
    fpr, tpr = rates_at_threshold(anomalous, flagged.astype(np.float64), 1.0)
    best_f1, _ = f1_max(anomalous, raw)
    result = {
        "bundle": str(cfg.bundle), "bundle_hash": pipe.bundle.hash, "data": cfg.data, "backend": pipe.backend,
        "precision": pipe.precision_key, "detector": pipe.detector.kind, "test_images": len(ds),
        "normal_label": ds.class_names[normal], "auroc": auroc(anomalous, raw), "aupr": aupr(anomalous, raw),
        "f1_max": best_f1, "fpr_at_threshold": fpr, "tpr_at_threshold": tpr,
    }
    if with_maps:
        masks = [mask_at_input(ds.mask(i), ds.image(i).shape, pipe.spec, ds.name(i)) for i in range(len(ds))]
        result["pixel_auroc"] = pixel_auroc(masks, maps)
    return result
