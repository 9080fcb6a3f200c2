"""``edgessl evaluate --run``: frozen-feature quality of a run directory.

The embedding metrics (kNN accuracy and balanced accuracy, the majority-class rate, linear probe,
``knn_auroc``) are ``feature_metrics``'; ``auroc`` is the fitted detector's (``edgessl fit``) when the
run has one, else ``knn_auroc``; with a detector also ``aupr``, ``f1_max``, ``fpr_at_threshold``, ...
(``detector_metrics``). The normal label defaults to the one the detector was fitted with.
"""

from __future__ import annotations

from edgessl.edge_runtime.data.datasets import drop_labels, open_dataset, resolve_label
from edgessl.edge_runtime.errors import EdgesslError

from . import precision
from .checkpoint import load_model
from .config import EvaluateConfig
from .detector_metrics import detector_metrics
from .distributed import pick_device
from .feature_metrics import feature_metrics
from .features import embed_dataset
from .run_records import fitted_normal_label, has_detector, with_recorded_data


def evaluate_run(cfg: EvaluateConfig) -> dict:
    """The metrics above as a JSON-able dict."""
    cfg = with_recorded_data(cfg, detector_first=True)
    backbone, spec, meta = load_model(cfg.run)
    fitted = has_detector(cfg.run)
    if cfg.plots and not fitted:
        raise EdgesslError(f"{cfg.run}: --plots needs a fitted detector; run `edgessl fit --run {cfg.run}` first")
    normal_label = cfg.normal_label if cfg.normal_label is not None else fitted_normal_label(cfg.run)
    device = pick_device(cfg.device)
    precision.select(cfg.torch_precision, shipped=True)
    train_ds = open_dataset(cfg.data, "train")
    test_ds = drop_labels(open_dataset(cfg.data, "test"), cfg.ignore_labels)
    if not (train_ds.labelled and test_ds.labelled):
        raise EdgesslError(f"{cfg.data}: evaluation needs labelled train and test splits")
    train_x = embed_dataset(backbone, train_ds, spec, device, cfg.batch_size)
    test_x = embed_dataset(backbone, test_ds, spec, device, cfg.batch_size)
    train_y, test_y = train_ds.labels, test_ds.labels
    normal = None if normal_label is None else resolve_label(train_ds, normal_label)
    if normal is not None and not (train_y == normal).any():
        raise EdgesslError(f"no training images carry the normal label {normal_label!r}")
    if normal is None and fitted:
        raise EdgesslError("the run's detector was fitted on unlabelled data; give --normal-label to say which "
                           "test class is normal")
    result = {
        "run": cfg.run, "data": cfg.data, "method": meta.get("method"), "backbone": meta["backbone"]["name"],
        "train_images": len(train_ds), "test_images": len(test_ds),
        **feature_metrics(train_x, train_y, test_x, test_y, normal, train_ds.class_names, k=cfg.k,
                          linear_probe=cfg.linear_probe),
    }
    if normal is not None:
        result["normal_label"] = train_ds.class_names[normal]
        result["auroc"] = result["knn_auroc"]
        if fitted:
            result.update(detector_metrics(cfg.run, backbone, spec, test_ds, normal, device, cfg.batch_size,
                                           cfg.plots))
    return result
