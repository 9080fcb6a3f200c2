"""``edgessl calibrate``: INT8 Q/DQ models for a bundle, judged by the accuracy gate, thresholds re-derived.

Steps: load and verify the bundle; read calibration and held-out images through the runtime's
preprocessing (``calib_data``); pre-process the fp32 model; collect activation ranges
(``collect_ranges``); per target write the Q/DQ model (``qdq``) and run the gate (``gate``), keeping
the costliest layers in float when it fails; re-derive each INT8 threshold from the held-out
normal scores with the fp32 threshold's own rule and settings (``edge_runtime.thresholds``).

A bundle with a classifier head is also judged by its task (``classifier_figures``: accuracy and
the positive class's AUROC against fp32 on the held-out labelled test images). One with a head and
no detector is calibrated on training images of every class, has no score criteria and no
threshold to re-derive.

The TensorRT-target model must also pass the TensorRT preflight (``export.tensorrt_preflight``,
for TensorRT 10 and 11 with ``build-engine``'s default profile); its report says what keeping the
biases in float changed: the gate's figures of the same model with int32 biases (ONNX Runtime's
default, which TensorRT cannot parse) beside its own.

Only when every target passes is the bundle changed, through ``update_bundle``: the INT8 models,
``calibration_report.json``, ``calibration_summary.txt`` and the re-sealed manifest, swapped in at
once. A failed gate or bad input leaves the bundle as it was. (No TensorRT calibration cache is
written: TensorRT 10 deprecated implicit quantization and 11 removed it; both take the Q/DQ model.)
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edgessl import __version__
from edgessl.edge_runtime.backends.ort import cpu_session, run_batches
from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.files import read_regular, write_atomic
from edgessl.edge_runtime.bundle_update import update_bundle, work_folder
from edgessl.edge_runtime.data.holdout import HeldOut, held_out
from edgessl.edge_runtime.data.classifier_figures import test_classes, test_images_only
from edgessl.edge_runtime.engines import engine_profile
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.graph_scores import features_of, scores_of
from edgessl.edge_runtime.jsonio import parse_json
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.edge_runtime.thresholds import Threshold, rederive_threshold
from edgessl.edge_runtime.timestamps import utc_now
from edgessl.export.config import EngineConfig, engine_batches
from edgessl.export.tensorrt_preflight import TENSORRT_LINES, preflight

from .calib_data import batch_digest, calibration_images, check_batch
from .collect_ranges import collect_stats, tensor_ranges
from .compare import compare
from .config import CalibrateConfig
from .gate import GateCriteria, GateFailed, run_gate
from .qdq import TARGETS, Target, float_biases, pre_process, quantizable_nodes, write_qdq
from .gate_report import REPORT_FILE, SUMMARY_FILE, write_report

MIN_QDQ_OPSET = 13  # per-channel QuantizeLinear/DequantizeLinear
SENSITIVITY_IMAGES = 64
BIAS_FIGURES = ("embedding_cosine_mean", "embedding_cosine_p5", "score_spearman", "auroc_int8")
TARGETS_BY_KEY = {t.key: t for t in TARGETS.values()}


def _targets(name: str) -> list[Target]:
    if name == "both":
        return [TARGETS["tensorrt"], TARGETS["cpu"]]
    if name not in TARGETS:
        raise EdgesslError(f"unknown target {name!r}; use tensorrt, cpu or both")
    return [TARGETS[name]]


class _Scorer:
    """Runs a model over the held-out images: its outputs other than the scoring ones, and the raw
    scores the model computes (``anomaly_score``; the numpy detector's for a model without it; None
    without a detector), which the gate judges."""

    def __init__(self, detector, images: np.ndarray, batch_size: int):
        self.detector, self.images, self.batch_size = detector, images, batch_size

    def __call__(self, model: Path, images: np.ndarray | None = None) -> tuple[dict, np.ndarray | None]:
        outs = run_batches(cpu_session(model), self.images if images is None else images, self.batch_size)
        if self.detector is None:
            return features_of(outs), None
        return features_of(outs), np.asarray(scores_of(outs, self.detector).raw_scores, np.float64)


@dataclass(frozen=True)
class Truth:
    """What the held-out images are known to be: per image 1 = anomaly, 0 = normal, -1 = unknown (or
    None); per image its classifier class, -1 = unknown (None: no classifier), the positive class."""

    anomalies: np.ndarray | None
    classes: np.ndarray | None
    positive: int | None


def _truth(hold: HeldOut, classifier: dict | None, data: str, max_test: int) -> Truth:
    """What is known of ``hold``'s images (normals first, then test images): the detector's
    anomaly labels and, for a classifier bundle, each test image's class; the normals' classes are
    not read (-1)."""
    unknown = np.full(len(hold.normals), -1)
    anomalies = None if hold.test_labels is None else np.r_[unknown, hold.test_labels]
    if classifier is None:
        return Truth(anomalies, None, None)
    classes, positive = classifier["classes"], classifier.get("positive_class")
    return Truth(anomalies, np.r_[unknown, test_classes(data, classes, max_test)],
                 None if positive is None else classes.index(positive))


def _gate_target(target: Target, pre: Path, ranges: dict, work: Path, scorer: _Scorer, ref: dict,
                 ref_scores: np.ndarray | None, truth: Truth, criteria: GateCriteria) -> dict:
    counter = itertools.count()
    sub = scorer.images[:SENSITIVITY_IMAGES]
    ref_sub = {k: v[:SENSITIVITY_IMAGES] for k, v in ref.items()}

    def quantize(exclude: tuple[str, ...], only: tuple[str, ...] | None) -> Path:
        out = work / f"{target.name}.{next(counter)}.onnx"
        write_qdq(pre, ranges, target, out, exclude, only)
        return out

    def evaluate(model: Path) -> dict:
        got, scores = scorer(model)
        return compare(ref, got, ref_scores, scores, truth.anomalies, truth.classes, truth.positive)

    def cost(model: Path) -> float:
        got, _ = scorer(model, sub)
        return 1.0 - compare(ref_sub, got, None, None)["embedding_cosine_mean"]

    result = run_gate(quantize, evaluate, quantizable_nodes(pre, target), criteria, cost)
    if not target.quantize_bias and result["passed"]:
        int32 = work / f"{target.name}.int32-bias.onnx"
        write_qdq(pre, ranges, replace(target, quantize_bias=True), int32, tuple(result["float_nodes"]))
        result["float_biases"] = float_bias_figures(result["model"], result["metrics"], evaluate(int32))
    return result


def float_bias_figures(model: Path, metrics: dict, int32_metrics: dict) -> dict:
    """What keeping the biases in float changed: the gate's figures with float and with int32 biases."""
    import onnx

    keys = [k for k in BIAS_FIGURES if k in metrics]
    return {"biases_kept_float": len(float_biases(onnx.load(str(model)))),
            "with_int32_biases": {k: int32_metrics[k] for k in keys},
            "change": {k: metrics[k] - int32_metrics[k] for k in keys}}


def _threshold_figures(t32: Threshold, hold: HeldOut, model: Path, scorer: _Scorer,
                       ref_scores: np.ndarray) -> tuple[Threshold, dict]:
    """The INT8 threshold from held-out normal scores (``thresholds.rederive_threshold``), its shift
    and the decision agreement with fp32."""
    _, scores = scorer(model)
    n = len(hold.normals)
    t8, held = rederive_threshold(t32, scores[:n], ref_scores[:n], hold.recorded_scores)
    agree = float((t8.is_anomaly(scores) == t32.is_anomaly(ref_scores)).mean())
    return t8, {"threshold_shift": (t8.raw_threshold - t32.raw_threshold) / t32.scale, "decision_agreement": agree,
                "holdout_normal_scores": [float(v) for v in held]}


def calibrate_bundle(cfg: CalibrateConfig) -> dict:
    """Calibrate, gate and (when every target passes) write into the bundle; returns the report."""
    targets = _targets(cfg.target)
    bundle = Bundle.load(cfg.bundle)
    m = bundle.manifest
    fp32_bytes = bundle.model_bytes("fp32")
    opset = model_opset(fp32_bytes)
    if opset < MIN_QDQ_OPSET:
        raise EdgesslError(f"{bundle.model_name('fp32')} has ONNX opset {opset}; INT8 Q/DQ needs opset "
                           f"{MIN_QDQ_OPSET} or newer (re-export with `edgessl export --opset 17`)")
    spec = PreprocessSpec.from_dict(m["preprocess"])
    detector = None if bundle.head_only else bundle.detector()
    classifier = m.get("classifier")
    data = bundle.recorded_data(cfg.data)
    normal_label = None if detector is None else bundle.recorded_normal_label(cfg.normal_label)
    t32 = None if detector is None else Threshold.from_dict(bundle.threshold("fp32"))
    input_shape = tuple(int(d) for d in m["model"]["input"]["shape"][1:])
    input_name = m["model"]["input"]["name"]

    x_cal = calibration_images(data, spec, normal_label, cfg.num_images)
    check_batch(x_cal, input_shape, "calibration")
    hold = test_images_only(data, spec, cfg.holdout_images) if detector is None else \
        held_out(data, spec, normal_label, bundle.fit_record(), cfg.holdout_images)
    check_batch(hold.test, input_shape, "held-out")
    images = np.concatenate([hold.normals, hold.test])
    truth = _truth(hold, classifier, data, cfg.holdout_images)
    criteria = GateCriteria(min_cosine_mean=cfg.min_cosine, max_auroc_change=cfg.max_auroc_change,
                            max_float_nodes=cfg.max_float_nodes, max_accuracy_drop=cfg.max_accuracy_drop)
    scorer = _Scorer(detector, images, cfg.batch_size)
    results: dict[str, dict] = {}
    with work_folder(bundle.root, "calibrate") as work:  # beside the bundle: a killed run's is removed next time
        fp32 = work / "model.fp32.onnx"  # the verified bytes (the bundle's file is never opened again)
        write_atomic(fp32, fp32_bytes)
        pre = work / "model.pre.onnx"
        pre_process(fp32, pre)
        started = time.perf_counter()
        stats = collect_stats(pre, x_cal, histograms=cfg.method != "minmax", batch_size=cfg.batch_size)
        ranges = tensor_ranges(stats, cfg.method, cfg.percentile, keep_full=(input_name,))
        range_seconds = time.perf_counter() - started
        ref, ref_scores = scorer(fp32)
        for target in targets:
            r = _gate_target(target, pre, ranges, work, scorer, ref, ref_scores, truth, criteria)
            results[target.key] = r
            r.update(threshold=None, threshold_shift=None, decision_agreement=None, holdout_normal_scores=None)
            if not r["passed"]:  # no threshold for a model that failed: its scores may not even spread
                continue
            if target.name == "tensorrt":
                preflight(r["model"], TENSORRT_LINES, engine_profile(m, engine_batches(EngineConfig())))
            if detector is not None:
                t8, shift = _threshold_figures(t32, hold, r["model"], scorer, ref_scores)
                r.update(shift, threshold=t8)
            r["model_bytes"] = read_regular(r["model"], "INT8 model")

        created = utc_now()
        report = {
            "tool_version": __version__, "created": created,
            "bundle_hash_before": bundle.hash,
            "calibration": {"method": cfg.method, "percentile": cfg.percentile if cfg.method == "percentile" else None,
                            "num_images": len(x_cal), "calibration_set_sha256": batch_digest(x_cal), "data": data,
                            "normal_label": normal_label,
                            "split": "train (every class)" if detector is None else "train (normal images)",
                            "activation_tensors": len(ranges), "range_seconds": round(range_seconds, 2)},
            "held_out": {"normals": len(hold.normals), "normals_from": hold.source, "test_images": len(hold.test),
                         "test_anomalies": None if hold.test_labels is None else int(hold.test_labels.sum()),
                         "positive_class": None if classifier is None else classifier.get("positive_class")},
            "gate_criteria": criteria.to_dict(),
            "targets": {k: {"model": TARGETS_BY_KEY[k].model_file, **TARGETS_BY_KEY[k].describe(), "calibrated": created,
                            "passed": r["passed"], "failed": r["failed"], "metrics": r["metrics"],
                            "float_nodes": r["float_nodes"], "attempts": r["attempts"],
                            "sensitivity": r["sensitivity"], "threshold": r["threshold"] and r["threshold"].to_dict(),
                            "threshold_shift": r["threshold_shift"], "decision_agreement": r["decision_agreement"],
                            "holdout_normal_scores": r["holdout_normal_scores"],
                            **({"float_biases": r["float_biases"]} if "float_biases" in r else {})}
                        for k, r in results.items()},
        }
        failing = "; ".join(f"{k}: {', '.join(r['failed'])}" for k, r in results.items() if not r["passed"])
        if failing:
            raise GateFailed(f"INT8 failed the accuracy gate ({failing}); the bundle is unchanged", report)
        update_bundle(bundle.root, lambda root, m: _write(root, m, results, report), based_on=bundle.hash)
    return report


def _earlier_targets(root: Path, manifest: dict, results: dict) -> dict:
    """Report entries of INT8 models this run leaves in place (an earlier ``--target``), kept in the report."""
    old = root / REPORT_FILE
    if not old.is_file():
        return {}
    previous = parse_json(read_regular(old, "calibration report"), str(old))
    if not isinstance(previous, dict):
        return {}
    entries = {**previous.get("earlier_targets", {}),
               **{k: {**t, "calibration": previous.get("calibration")} for k, t in previous.get("targets", {}).items()}}
    return {k: t for k, t in entries.items() if k not in results and k in manifest.get("precisions", {})}


def _write(root: Path, m: dict, results: dict, report: dict) -> dict:
    """Models and report into the bundle's staging copy ``root``; returns the new manifest."""
    precisions, thresholds = dict(m.get("precisions", {})), dict(m.get("thresholds", {}))
    cal = report["calibration"]
    for key, r in results.items():
        target = TARGETS_BY_KEY[key]
        write_atomic(root / target.model_file, r["model_bytes"])
        precisions[key] = {"model": target.model_file, "dtype": "int8", "target": target.name, **target.describe(),
                           "float_nodes": r["float_nodes"],
                           "calibration": {k: cal[k] for k in ("method", "num_images", "calibration_set_sha256")},
                           "gate": {"passed": True, **{k: v for k, v in r["metrics"].items()
                                                       if k.endswith(("mean", "p5", "spearman", "change"))}}}
        if target.name == "tensorrt":
            precisions[key]["tensorrt_preflight"] = {"passed": True, "tensorrt": list(TENSORRT_LINES)}
        if r["threshold"] is not None:
            thresholds[key] = r["threshold"].to_dict()
            precisions[key]["threshold_from"] = f"{report['held_out']['normals']} held-out normal scores of this model"
    write_report(root, {**report, "earlier_targets": _earlier_targets(root, m, results)})
    m["calibration"] = {**cal, "targets": list(results), "report": REPORT_FILE, "summary": SUMMARY_FILE,
                        "created": report["created"]}
    m.update(precisions=precisions, **({"thresholds": thresholds} if thresholds else {}))
    return m


def model_opset(model: bytes) -> int:
    """The default-domain opset an ONNX model (its bytes) declares."""
    import onnx

    proto = onnx.load_model_from_string(model)
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
