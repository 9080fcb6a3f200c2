"""A freshly built TensorRT engine against ONNX Runtime, and its own threshold (``build-engine``).

On the held-out images calibration uses (``edge_runtime.data.holdout``: the normals the fp32
threshold came from, and up to ``holdout_images`` test images), the engine runs through the
runtime's TensorRT backend and ONNX Runtime (CPU) runs the engine's source model:

* per feature output, the cosine of each image's engine and ONNX Runtime outputs (mean, 5th
  percentile), the largest relative difference of the raw scores (the ``anomaly_score`` the models
  compute, ``edge_runtime.graph_scores``; the numpy detector's for older models), and the share of images whose
  decision is the same (the engine at its threshold, the source model at the bundle's);
* the engine is refused when a mean cosine is below ``min_cosine``;
* its threshold is re-derived from its own scores of the held-out normals with the fp32
  threshold's rule and settings (``thresholds.rederive_threshold``), so an fp16 or int8 engine is
  never scored with a threshold another precision earned.
"""

from __future__ import annotations


import numpy as np

from edgessl.edge_runtime.backends.ort import cpu_session, run_batches
from edgessl.edge_runtime.backends.tensorrt_native import TensorRTBackend
from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.data.holdout import held_out
from edgessl.edge_runtime.data.metrics import row_cosine
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.graph_scores import features_of, scores_of
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.edge_runtime.thresholds import Threshold, rederive_threshold


def _images(bundle: Bundle, data: str | None, holdout_images: int):
    source = bundle.recorded_data(data)
    spec = PreprocessSpec.from_dict(bundle.manifest["preprocess"])
    try:
        return held_out(source, spec, bundle.recorded_normal_label(), bundle.fit_record(), holdout_images)
    except EdgesslError as exc:
        raise EdgesslError(f"cannot read the held-out images the engine is checked on ({exc}); give --data with "
                           "the bundle's data as it is on this device") from None


def check_engine_outputs(bundle: Bundle, engine: bytes, source: str, dla_core: int | None,
                         data: str | None, holdout_images: int, min_cosine: float) -> tuple[dict, Threshold]:
    """The comparison record (module docstring) and the engine's threshold; ``EdgesslError`` when
    the engine strays from ONNX Runtime on its source model (``source``: a bundle precision key)."""
    hold = _images(bundle, data, holdout_images)
    images = np.concatenate([hold.normals, hold.test])
    n = len(hold.normals)
    detector = bundle.detector()
    got = TensorRTBackend(engine, "the new engine", dla_core).run(images)
    ref = run_batches(cpu_session(bundle.model_bytes(source)), images)
    fp32 = ref if source == "fp32" else run_batches(cpu_session(bundle.model_bytes("fp32")), images)
    scores, ref_scores, fp32_scores = (np.asarray(scores_of(o, detector).raw_scores, np.float64)
                                       for o in (got, ref, fp32))
    got, ref = features_of(got), features_of(ref)
    t32 = Threshold.from_dict(bundle.threshold("fp32"))
    threshold, _ = rederive_threshold(t32, scores[:n], fp32_scores[:n], hold.recorded_scores)
    record: dict = {"against": f"ONNX Runtime (CPU) on {bundle.manifest['precisions'][source]['model']}",
                    "images": int(len(images)), "normals_from": hold.source}
    for name in ref:
        c = row_cosine(ref[name], got[name])
        record[f"{name}_cosine_mean"], record[f"{name}_cosine_p5"] = float(c.mean()), float(np.percentile(c, 5))
    record["score_rel_diff_max"] = float(np.abs(scores - ref_scores).max() / max(np.abs(ref_scores).max(), 1e-30))
    reference = Threshold.from_dict(bundle.threshold(source))
    record["decision_agreement"] = float((threshold.is_anomaly(scores) == reference.is_anomaly(ref_scores)).mean())
    low = [f"{name} mean cosine {record[f'{name}_cosine_mean']:.5f}" for name in ref
           if record[f"{name}_cosine_mean"] < min_cosine]
    if low:
        raise EdgesslError(f"the engine's outputs stray from ONNX Runtime's on {record['images']} held-out images "
                           f"({', '.join(low)} < --min-cosine {min_cosine}); nothing was written")
    return record, threshold
