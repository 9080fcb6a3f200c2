"""The anomaly metrics of scored, labelled test images: one dict, the same keys for every caller.

``edgessl evaluate --run`` (torch features) and ``edgessl evaluate --bundle`` (the runtime) both
build their output here, from raw scores of the runtime's detector code:

* ``auroc``, ``aupr``, ``f1_max``, ``f1_threshold`` (raw) and ``f1_threshold_normalised``;
* ``threshold`` (raw), ``target_fpr``, ``fpr_at_threshold``, ``tpr_at_threshold`` (decision
  ``raw >= threshold``);
* ``pixel_auroc`` (``pixel_auroc_from_dataset``) when the data has masks and the detector maps.
"""

from __future__ import annotations

import numpy as np

from .image_datasets import ImageDataset
from ..heatmaps import mask_at_input, upsample_map
from .metrics import aupr, auroc, f1_max, pixel_auroc, rates_at_threshold
from ..preprocess import PreprocessSpec
from ..thresholds import Threshold


def anomaly_report(anomalous: np.ndarray, raw: np.ndarray, threshold: Threshold) -> dict:
    """Image-level metrics of raw scores against labels (``anomalous`` true for anomalies)."""
    f1, f1_t = f1_max(anomalous, raw)
    fpr, tpr = rates_at_threshold(anomalous, raw, threshold.raw_threshold)
    return {
        "auroc": auroc(anomalous, raw), "aupr": aupr(anomalous, raw), "f1_max": f1, "f1_threshold": f1_t,
        "f1_threshold_normalised": float(threshold.normalise(f1_t)), "threshold": threshold.raw_threshold,
        "target_fpr": threshold.target_fpr, "fpr_at_threshold": fpr, "tpr_at_threshold": tpr,
    }


def pixel_auroc_from_dataset(ds: ImageDataset, maps: np.ndarray, spec: PreprocessSpec) -> float:
    """Pixel AUROC of feature-resolution ``maps`` (one per image of ``ds``) against ``ds``'s masks,
    both at the model input: maps upsampled, masks resized and cropped like their images."""
    masks = [mask_at_input(ds.mask(i), ds.image(i).shape, spec, ds.name(i)) for i in range(len(ds))]
    return pixel_auroc(masks, [upsample_map(m, spec.image_size) for m in maps])
