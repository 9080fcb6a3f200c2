"""``edgessl evaluate --bundle``: anomaly metrics of a bundle, computed through the runtime.

The test split of ``data`` goes through ``Pipeline`` exactly as on the device (same
preprocessing, backend, precision, detector and threshold); the metrics come from the same
torch-free function as ``evaluate --run`` (``anomaly_report``: AUROC, AUPR, F1, the rates at this
precision's threshold) and ``pixel_auroc`` when the data has masks and the detector gives maps
(both at the model input's resolution). ``feature_metrics``, when given, adds the embedding-based keys of
``evaluate --run`` (kNN accuracy, linear probe, kNN AUROC) from the runtime's own embeddings.

A bundle with a classifier head adds ``classification`` (``classification_report``: accuracy,
balanced accuracy, per-class recall, the positive class's AUROC, the confusion matrix) from the
graph's probabilities; one with no detector has no anomaly keys (and needs no normal label).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..data.anomaly_report import anomaly_report, pixel_auroc_from_dataset
from ..data.classification_report import classification_report, classifier_labels
from ..data.datasets import drop_labels, open_dataset, resolve_label
from ..data.image_datasets import ImageDataset
from ..errors import EdgesslError
from ..pipeline import Pipeline
from ..pipeline_options import BundleOptions
from .runner import RunOptions, ScoredStream
from .sources import DatasetSource


@dataclass
class EvalData:
    """What both ``evaluate --run`` and ``evaluate --bundle`` evaluate on: the labelled dataset
    (None: the data the detector was fitted on), the normal class (None: the detector's), classes
    left out of the test metrics (ELPV's uncertain), and images per inference call."""

    data: str | None = None
    normal_label: str | None = None
    ignore_labels: list[str] = field(default_factory=list)
    batch_size: int = 256


@dataclass
class BundleEvalConfig(EvalData, BundleOptions):
    """A bundle evaluated through the torch-free runtime."""


@dataclass
class Scores:
    """A dataset's scores from the pipeline, in dataset order."""

    raw: np.ndarray | None  # (N,) float64; None without a detector
    features: np.ndarray | None  # (N, D) float32 embeddings
    maps: list[np.ndarray] | None  # normalised maps at the model input's size
    probabilities: np.ndarray | None  # (N, K) class probabilities (a bundle with a classifier head)


def score_dataset(pipe: Pipeline, ds: ImageDataset, batch_size: int = 256, with_features: bool = False,
                  with_maps: bool = False) -> Scores:
    """Every image of ``ds`` through the one scoring loop (``ScoredStream``); one that cannot be
    scored raises ``EdgesslError``."""
    raw, feats, maps, probs = [], [], [], []
    stream = ScoredStream(pipe, DatasetSource(ds.source, ds), RunOptions(batch_size=batch_size, progress=False),
                          with_features=with_features, map_space="model")
    for s in stream:
        if s.result is None:
            raise EdgesslError(f"cannot evaluate: {s.error}")
        raw.append(s.result.raw_score)
        feats.append(s.result.features)
        maps.append(s.result.anomaly_map)
        probs.append(None if s.result.probabilities is None else list(s.result.probabilities.values()))
    return Scores(np.asarray(raw, np.float64) if pipe.detector is not None else None,
                  np.stack(feats) if with_features else None, maps if with_maps else None,
                  np.asarray(probs, np.float64) if pipe.classes else None)


FeatureMetrics = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int, list[str]], dict]


def evaluate_bundle(cfg: BundleEvalConfig, feature_metrics: FeatureMetrics | None = None) -> dict:
    """The metrics above as a JSON-able dict. ``feature_metrics(train_x, train_y, test_x, test_y,
    normal, class_names)`` receives runtime embeddings of the train and test splits."""
    pipe = cfg.pipeline()
    data = pipe.bundle.recorded_data(cfg.data)
    test_ds = drop_labels(open_dataset(data, "test"), cfg.ignore_labels)
    if not test_ds.labelled:
        raise EdgesslError(f"{data}: evaluation needs a labelled test split")
    detector = pipe.detector
    label = pipe.bundle.recorded_normal_label(cfg.normal_label)
    if label is None and detector is not None:
        raise EdgesslError("say which class is normal with --normal-label (the bundle does not record it)")
    normal = None if label is None else resolve_label(test_ds, label)
    y = None if not pipe.classes else classifier_labels(test_ds.class_names, pipe.classes, data)[test_ds.labels]
    with_maps = test_ds.has_masks and detector is not None and detector.has_maps
    test = score_dataset(pipe, test_ds, cfg.batch_size, feature_metrics is not None, with_maps)
    training = pipe.bundle.manifest.get("provenance", {}).get("training", {})
    result = {
        "bundle": str(cfg.bundle), "bundle_hash": pipe.bundle.hash, "data": data, "backend": pipe.backend,
        "precision": pipe.precision_key, "method": training.get("method"),
        "backbone": (training.get("backbone") or {}).get("name"), "test_images": len(test_ds),
        "normal_label": None if normal is None else test_ds.class_names[normal],
        "detector": None if detector is None else detector.kind,
    }
    if detector is not None:
        result.update(anomaly_report(test_ds.labels != normal, test.raw, pipe.threshold_record))
    if with_maps:  # maps are normalised (affine in raw), which leaves the AUROC unchanged
        result["pixel_auroc"] = pixel_auroc_from_dataset(test_ds, test.maps, pipe.spec)
    if y is not None:
        result["classification"] = classification_report(y, test.probabilities, pipe.classes,
                                                         pipe.bundle.manifest["classifier"].get("positive_class"))
    if feature_metrics is not None:
        train_ds = open_dataset(data, "train")
        train = score_dataset(pipe, train_ds, cfg.batch_size, with_features=True)
        result["train_images"] = len(train_ds)
        result.update(feature_metrics(train.features, train_ds.labels, test.features, test_ds.labels, normal,
                                      train_ds.class_names))
    return result
