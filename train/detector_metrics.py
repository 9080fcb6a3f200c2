"""Anomaly metrics of a run's fitted detector on a labelled test split.

Scores come from ``scoring.score_dataset`` (the runtime's numpy detector), so they are the
device's numbers; the keys are ``edge_runtime.data.anomaly_report``'s (shared with ``evaluate --bundle``)
plus ``detector``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgessl.edge_runtime.data.anomaly_report import anomaly_report, pixel_auroc_from_dataset
from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.detectors import load_detector
from edgessl.edge_runtime.heatmaps import upsample_map
from edgessl.edge_runtime.preprocess import PreprocessSpec, resize_image
from edgessl.edge_runtime.thresholds import Threshold

from .backbones import Backbone
from .run_records import detector_dir
from .scoring import score_dataset

TOP_IMAGES = 8


def detector_metrics(run_dir: str | Path, backbone: Backbone, spec: PreprocessSpec, test_ds: ImageDataset,
                     normal: int, device, batch_size: int, plots_dir: str | None = None) -> dict:
    """The metrics above (and the plots, when ``plots_dir`` is given) as a JSON-able dict."""
    folder = detector_dir(run_dir)
    detector = load_detector(folder)
    threshold = Threshold.load(folder / "threshold.json")
    out = score_dataset(backbone, detector, test_ds, spec, device, batch_size)
    y = test_ds.labels != normal
    result = {"detector": detector.kind, **anomaly_report(y, out.raw_scores, threshold)}
    if test_ds.has_masks and out.maps is not None:
        result["pixel_auroc"] = pixel_auroc_from_dataset(test_ds, out.maps, spec)
    if plots_dir:
        result["plots"] = _plots(Path(plots_dir), test_ds, spec, y, out.raw_scores, out.maps, threshold, result)
    return result


def _plots(folder: Path, ds: ImageDataset, spec: PreprocessSpec, y: np.ndarray, raw: np.ndarray,
           maps: np.ndarray | None, threshold: Threshold, result: dict) -> list[str]:
    from . import plots

    folder.mkdir(parents=True, exist_ok=True)
    top = np.argsort(-raw, kind="stable")[:TOP_IMAGES]
    images = [resize_image(ds.image(int(i)), spec) for i in top]
    heat = None if maps is None else [threshold.normalise(upsample_map(maps[i], spec.image_size)) for i in top]
    titles = [("anomalous" if y[i] else "normal") + f" #{i}" for i in top]
    return [str(p) for p in (
        plots.roc_plot(y, raw, (result["fpr_at_threshold"], result["tpr_at_threshold"]), result["auroc"],
                       folder / "roc.png"),
        plots.histogram_plot(y, threshold.normalise(raw), folder / "histogram.png"),
        plots.top_scoring_plot(images, heat, threshold.normalise(raw[top]), titles, folder / "top_scoring.png"),
    )]
