"""A freshly built TensorRT engine against ONNX Runtime, and its own threshold (``build-engine``).

On the held-out images calibration uses (``edge_runtime.data.holdout``: the normals the fp32
threshold came from, and up to ``holdout_images`` test images; a bundle with a classifier head and
no detector: the test images alone), the engine runs through the runtime's TensorRT backend and
ONNX Runtime (CPU) runs the engine's source model:

* per feature output, the cosine of each image's engine and ONNX Runtime outputs (mean, 5th
  percentile); the engine is refused when a mean cosine is below ``min_cosine``. A classifier
  head's outputs (``logits``, ``probabilities``) are reported but judged by the task instead;
* with a detector: the largest relative difference of the raw scores (the ``anomaly_score`` the
  models compute, ``edge_runtime.graph_scores``; the numpy detector's for older models), and the
  share of images whose decision is the same (the engine at its threshold, the source model at the
  bundle's). The engine's threshold is re-derived from its own scores of the held-out normals with
  the fp32 threshold's rule and settings (``thresholds.rederive_threshold``), so an fp16 or int8
  engine is never scored with a threshold another precision earned;
* with a classifier head: on the labelled test images, the accuracy of ONNX Runtime's and the
  engine's ``argmax probabilities``, their change, the share of images given the same class and,
  with a positive class, its AUROC change (``classifier_figures``); the engine is refused when its
  accuracy drops by more than ``max_accuracy_drop``. A head alone has no threshold to re-derive.
"""

from __future__ import annotations


import numpy as np

from edgessl.edge_runtime.backends.ort import cpu_session, run_batches
from edgessl.edge_runtime.backends.tensorrt_native import TensorRTBackend
from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.data.classifier_figures import TASK_JUDGED, classifier_figures, test_classes, test_images_only
from edgessl.edge_runtime.data.holdout import HeldOut, held_out
from edgessl.edge_runtime.data.metrics import row_cosine
from edgessl.edge_runtime.detectors import Detector
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.graph_scores import features_of, scores_of
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.edge_runtime.thresholds import Threshold, rederive_threshold


def _images(bundle: Bundle, source: str, detector: bool, holdout_images: int) -> HeldOut:
    spec = PreprocessSpec.from_dict(bundle.manifest["preprocess"])
    try:
        if not detector:
            return test_images_only(source, spec, holdout_images)
        return held_out(source, spec, bundle.recorded_normal_label(), bundle.fit_record(), holdout_images)
    except EdgesslError as exc:
        raise EdgesslError(f"cannot read the held-out images the engine is checked on ({exc}); give --data with "
                           "the bundle's data as it is on this device") from None


def _score_figures(bundle: Bundle, detector: Detector, source: str, images: np.ndarray, n_normals: int,
                   recorded: np.ndarray | None, got: dict, ref: dict) -> tuple[dict, Threshold]:
    """The detector's figures (module docstring) and the engine's re-derived threshold."""
    fp32 = ref if source == "fp32" else run_batches(cpu_session(bundle.model_bytes("fp32")), images)
    scores, ref_scores, fp32_scores = (np.asarray(scores_of(o, detector).raw_scores, np.float64)
                                       for o in (got, ref, fp32))
    t32 = Threshold.from_dict(bundle.threshold("fp32"))
    threshold, _ = rederive_threshold(t32, scores[:n_normals], fp32_scores[:n_normals], recorded)
    reference = Threshold.from_dict(bundle.threshold(source))
    return {"score_rel_diff_max": float(np.abs(scores - ref_scores).max() / max(np.abs(ref_scores).max(), 1e-30)),
            "decision_agreement": float((threshold.is_anomaly(scores) == reference.is_anomaly(ref_scores)).mean())}, \
        threshold


def check_engine_outputs(bundle: Bundle, engine: bytes, source: str, dla_core: int | None, data: str | None,
                         holdout_images: int, min_cosine: float,
                         max_accuracy_drop: float) -> tuple[dict, Threshold | None]:
    """The comparison record (module docstring) and the engine's threshold (None: a bundle with no
    detector); ``EdgesslError`` when the engine strays from ONNX Runtime on its source model
    (``source``: a bundle precision key)."""
    classifier = bundle.manifest.get("classifier")
    detector = None if bundle.head_only else bundle.detector()
    data = bundle.recorded_data(data)
    hold = _images(bundle, data, detector is not None, holdout_images)
    images = np.concatenate([hold.normals, hold.test])
    got = TensorRTBackend(engine, "the new engine", dla_core).run(images)
    ref = run_batches(cpu_session(bundle.model_bytes(source)), images)
    record: dict = {"against": f"ONNX Runtime (CPU) on {bundle.manifest['precisions'][source]['model']}",
                    "images": int(len(images)), "normals_from": hold.source}
    features, got_features = features_of(ref), features_of(got)
    for name in features:
        c = row_cosine(features[name], got_features[name])
        record[f"{name}_cosine_mean"], record[f"{name}_cosine_p5"] = float(c.mean()), float(np.percentile(c, 5))
    threshold = None
    if detector is not None:
        figures, threshold = _score_figures(bundle, detector, source, images, len(hold.normals), hold.recorded_scores,
                                            got, ref)
        record.update(figures)
    low = [f"{name} mean cosine {record[f'{name}_cosine_mean']:.5f} < --min-cosine {min_cosine}" for name in features
           if name not in TASK_JUDGED and record[f"{name}_cosine_mean"] < min_cosine]
    if classifier is not None:
        classes, positive = classifier["classes"], classifier.get("positive_class")
        y = np.r_[np.full(len(hold.normals), -1), test_classes(data, classes, holdout_images)]
        record.update(classifier_figures(ref["probabilities"], got["probabilities"], y,
                                         None if positive is None else classes.index(positive), ("onnx", "engine")))
        if -record["accuracy_change"] > max_accuracy_drop:
            low.append(f"accuracy change {record['accuracy_change']:+.4f} below -{max_accuracy_drop} "
                       "(--max-accuracy-drop)")
    if low:
        raise EdgesslError(f"the engine's outputs stray from ONNX Runtime's on {record['images']} held-out images "
                           f"({', '.join(low)}); nothing was written")
    return record, threshold
