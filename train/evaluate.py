"""``edgessl evaluate --run``: frozen-feature quality of a run directory.

* ``knn_accuracy``: weighted kNN (k=200, cosine, T=0.1) from train to test embeddings;
* ``linear_probe_accuracy``: multinomial logistic regression on standardised train embeddings;
* ``knn_auroc`` (with ``--normal-label``): one-class, the mean cosine distance to the 5 nearest
  normal training embeddings as the anomaly score, normal test images vs all others;
* ``auroc``: the fitted detector's (``edgessl fit``) when the run has one, else ``knn_auroc``;
  with a detector also ``aupr``, ``f1_max``, ``fpr_at_threshold``, ... (``detector_eval``). The
  normal label defaults to the one the detector was fitted with.
"""

from __future__ import annotations



import numpy as np

from edgessl.edge_runtime.data.datasets import drop_labels, open_dataset, resolve_label
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.data.metrics import auroc

from .checkpoint import load_model
from .config import EvaluateConfig, with_recorded_data
from .detector_eval import detector_metrics, fitted_normal_label, has_detector
from .distributed import pick_device
from .features import embed_dataset
from .knn import knn_distance, knn_predict


def linear_probe_accuracy(train_x, train_y, test_x, test_y, seed: int = 0) -> float:
    """Accuracy of an L2-regularised logistic regression fitted on the train embeddings."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    clf = LogisticRegression(max_iter=1000, C=1.0, random_state=seed)
    clf.fit(scaler.transform(train_x), train_y)
    return float((clf.predict(scaler.transform(test_x)) == test_y).mean())


def evaluate_run(cfg: EvaluateConfig) -> dict:
    """The metrics above as a JSON-able dict."""
    cfg = with_recorded_data(cfg, detector_first=True)
    backbone, spec, meta = load_model(cfg.run)
    fitted = has_detector(cfg.run)
    if cfg.plots and not fitted:
        raise EdgesslError(f"{cfg.run}: --plots needs a fitted detector; run `edgessl fit --run {cfg.run}` first")
    normal_label = cfg.normal_label if cfg.normal_label is not None else fitted_normal_label(cfg.run)
    device = pick_device(cfg.device)
    train_ds = open_dataset(cfg.data, "train")
    test_ds = drop_labels(open_dataset(cfg.data, "test"), cfg.ignore_labels)
    if not (train_ds.labelled and test_ds.labelled):
        raise EdgesslError(f"{cfg.data}: evaluation needs labelled train and test splits")
    train_x = embed_dataset(backbone, train_ds, spec, device, cfg.batch_size)
    test_x = embed_dataset(backbone, test_ds, spec, device, cfg.batch_size)
    train_y, test_y = train_ds.labels, test_ds.labels
    result = {
        "run": cfg.run, "data": cfg.data, "method": meta.get("method"), "backbone": meta["backbone"]["name"],
        "train_images": len(train_ds), "test_images": len(test_ds), "knn_accuracy": None,
    }
    if len(np.unique(train_y)) > 1:  # MVTec-style data has one training class: no classification
        result["knn_accuracy"] = float((knn_predict(train_x, train_y, test_x, cfg.k) == test_y).mean())
        if cfg.linear_probe:
            result["linear_probe_accuracy"] = linear_probe_accuracy(train_x, train_y, test_x, test_y)
    if normal_label is not None:
        normal = resolve_label(train_ds, normal_label)
        bank = train_x[train_y == normal]
        if len(bank) == 0:
            raise EdgesslError(f"no training images carry the normal label {normal_label!r}")
        result["normal_label"] = train_ds.class_names[normal]
        result["knn_auroc"] = auroc(test_y != normal, knn_distance(bank, test_x, k=5))
        result["auroc"] = result["knn_auroc"]
        if fitted:
            result.update(detector_metrics(cfg.run, backbone, spec, test_ds, normal, device, cfg.batch_size,
                                           cfg.plots))
    elif fitted:
        raise EdgesslError("the run's detector was fitted on unlabelled data; give --normal-label to say which "
                           "test class is normal")
    return result
