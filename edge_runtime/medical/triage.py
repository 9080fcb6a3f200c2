"""Medical-image triage: score every study with a bundle, rank them, report, and audit each decision.

``run_triage`` writes into ``out``: ``worklist.csv`` (``worklist``), ``report.html``
(``report_html``), and appends one line per study to ``audit.jsonl`` (``audit_log``); with
``dicom_out``, the results of each DICOM instance as DICOM objects that reference it (``sr``).

Decision: *abnormal iff raw score >= raw threshold*, where the raw threshold is the operating point's
(``operating_point``, chosen for a sensitivity on labelled validation images) when the bundle has one
for this precision, else the bundle's normal-only threshold (normalised score 1.0). A study is not
scored, with the reason, when it cannot be read or is outside the bundle's ``intended_use``.
``set_operating_point`` scores labelled validation images the same way and stores the point.

A bundle with a classifier head and no detector (``edgessl export`` of a fine-tuned run) is ranked
by its positive class's probability ``p`` (``--positive-class`` at export; refused without one):
``score`` and ``raw_score`` are ``p``, abnormal iff ``p >=`` the operating point's threshold (set
on ``p`` of labelled validation images, like a detector's) or, without one, ``POSITIVE_THRESHOLD``
(0.5). Its DICOM results state that rule, the predicted class and the probabilities (``sr``); a
bundle with a detector and a head states the class beside the anomaly score.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from . import operating_point as opmod
from .audit_log import AuditLog
from ..data.datasets import open_dataset
from ..drift import batch_drift
from ..errors import EdgesslError
from ..pipeline_options import BundleOptions
from ..streams.runner import RunOptions, ScoredStream
from ..outputs import output_folder, refuse_overlap
from ..streams.sources import Frame, Source, source_paths
from ..timestamps import utc_now
from .intended_use import IntendedUse, reference_size
from ..data.metrics import auroc
from .report_html import thumbnail, write_report
from .sr import ResultContext, ResultWriter
from .studies import Study, dataset_studies, image_sha256, iter_studies, read_labels
from .worklist import ABNORMAL, NORMAL, SCORED, TriageRecord, rank, write_worklist

WORKLIST, REPORT, AUDIT = "worklist.csv", "report.html", "audit.jsonl"
POSITIVE_THRESHOLD = 0.5  # a classifier-only bundle: abnormal iff p(positive class) >= it


@dataclass(frozen=True)
class Decision:
    """The threshold a run decides with: raw units (the comparison) and normalised (for display)."""

    kind: str  # "operating_point", "normal_only" or "positive_class"
    raw_threshold: float
    threshold: float
    point: opmod.OperatingPoint | None = None
    positive_class: str | None = None  # "positive_class": the class whose probability is the score


def decision_rule(pipe, request: str) -> Decision:
    """The operating point ``request`` selects for the pipeline's precision, or the normal-only threshold."""
    point = opmod.select_point(pipe.bundle.manifest, pipe.precision_key, request)
    if pipe.detector is None:
        return classifier_rule(pipe, point)
    if point is None:
        rec = pipe.threshold_record
        return Decision("normal_only", float(rec.raw_threshold), 1.0)
    opmod.check_current(pipe.bundle.manifest, pipe.precision_key, point)
    return Decision("operating_point", point.raw_threshold,
                    float(pipe.threshold_record.normalise(point.raw_threshold)), point)


def classifier_rule(pipe, point: opmod.OperatingPoint | None = None) -> Decision:
    """A bundle with a classifier and no detector: its positive class's probability, at ``point``'s
    threshold or 0.5."""
    positive = pipe.bundle.manifest.get("classifier", {}).get("positive_class")
    if positive is None:
        raise EdgesslError("the bundle has a classifier and no detector, and names no positive class to rank by; "
                           "re-export it with `edgessl export --positive-class CLASS`")
    if point is None:
        return Decision("positive_class", POSITIVE_THRESHOLD, POSITIVE_THRESHOLD, positive_class=positive)
    opmod.check_current(pipe.bundle.manifest, pipe.precision_key, point)
    return Decision("operating_point", point.raw_threshold, point.raw_threshold, point, positive_class=positive)


def _anomalous(label: str | None, normal_label: str | None) -> bool | None:
    return None if label is None or normal_label is None else label != str(normal_label)


class StudySource(Source):
    """Studies as frames for the scoring loop: a study that cannot be read, or is outside the
    intended use, is an error frame carrying its reason; ``meta["study"]`` hands the study back."""

    def __init__(self, studies: Iterable[Study], use: IntendedUse):
        super().__init__("studies")
        self.studies, self.use = studies, use

    def __iter__(self) -> Iterator[Frame]:
        for i, study in enumerate(self.studies):
            reason = study.reason if study.image is None else self.use.reason(study.image, study.modality)
            yield Frame(i, study.key, None if reason else study.image, reason or None, meta={"study": study})


def score_studies(pipe, studies: Iterable[Study], use: IntendedUse, rule: Decision, normal_label: str | None,
                  options: RunOptions) -> Iterator[tuple[Study, TriageRecord]]:
    """Every study with its record, in order, through the one scoring loop (batched and prefetched).

    Per-study independence: a study's score is a function of its own pixels only (``ScoredStream``:
    no batch statistics), so neither the batch size nor the other studies change it; a problem
    becomes the record's reason, never an exception."""
    for s in ScoredStream(pipe, StudySource(studies, use), options):
        study = s.frame.meta["study"]
        yield study, decide(study, s.result, s.error or "", rule, normal_label)


def decide(study: Study, result, reason: str, rule: Decision, normal_label: str | None) -> TriageRecord:
    """The record of a study scored as ``result`` (None: not scored, for ``reason``)."""
    rec = TriageRecord(study.file, study.file_sha256, study.frame, study.study_uid, study.series_uid,
                       study.instance_uid, study.modality, label=study.label,
                       anomalous=_anomalous(study.label, normal_label))
    if study.image is not None:
        rec.image_sha256 = image_sha256(study.image)
    if result is None:
        rec.reason = reason
        return rec
    raw, score = result.raw_score, result.score
    if rule.positive_class is not None:
        raw = score = result.probabilities[rule.positive_class]
    rec.status, rec.score, rec.raw_score, rec.threshold = SCORED, score, raw, rule.threshold
    rec.class_name, rec.probabilities = result.class_name, result.probabilities
    rec.decision = ABNORMAL if raw >= rule.raw_threshold else NORMAL
    rec.thumbnail = thumbnail(study.image)
    if result.anomaly_map is not None:
        h, w = rec.thumbnail.shape[:2]
        rec.heatmap = cv2.resize(result.anomaly_map, (w, h), interpolation=cv2.INTER_AREA)
    return rec


def run_info(pipe, rule: Decision, bundle: str) -> dict:
    """What every audit line of a run says about the tool, the model and the decision rule."""
    from edgessl import __version__

    return {"run_id": uuid.uuid4().hex, "tool_version": __version__, "bundle": str(Path(bundle).resolve()),
            "bundle_hash": pipe.bundle.hash, "manifest_version": pipe.bundle.manifest.get("manifest_version"),
            "backend": pipe.backend, "precision": pipe.precision_key, "threshold_kind": rule.kind,
            "threshold": rule.threshold, "raw_threshold": rule.raw_threshold,
            "operating_point": rule.point.name if rule.point else None}


def result_context(pipe, rule: Decision, use: IntendedUse, run: dict) -> ResultContext:
    """What the DICOM result objects state about the model and the rule (``sr``): no target
    false-positive rate without a detector; the classifier's positive class where the bundle names one."""
    return ResultContext(tool_version=run["tool_version"], bundle_hash=run["bundle_hash"],
                         manifest_version=str(run["manifest_version"]), backend=run["backend"],
                         precision=run["precision"], threshold_kind=rule.kind, threshold=rule.threshold,
                         raw_threshold=rule.raw_threshold,
                         target_fpr=None if pipe.detector is None else float(pipe.threshold_record.target_fpr),
                         intended_use=use, operating_point=rule.point,
                         positive_class=pipe.bundle.manifest.get("classifier", {}).get("positive_class"))


def audit_entry(rec: TriageRecord, run: dict) -> dict:
    """The audit log line of a record: the study, the model, the settings, the outcome."""
    return {**run, "time": utc_now(), "file": rec.file, "frame": rec.frame, "file_sha256": rec.file_sha256,
            "image_sha256": rec.image_sha256 or None, "study_uid": rec.study_uid, "series_uid": rec.series_uid,
            "instance_uid": rec.instance_uid, "modality": rec.modality, "status": rec.status,
            "reason": rec.reason, "score": rec.score, "raw_score": rec.raw_score,
            "decision": rec.decision or None, "label": rec.label}


def test_metrics(records: list[TriageRecord]) -> dict | None:
    """Sensitivity/specificity at the run's decisions and AUROC, over scored studies with a known label."""
    known = [r for r in records if r.status == SCORED and r.anomalous is not None]
    truth = np.array([r.anomalous for r in known], bool)
    if not known or truth.all() or not truth.any():
        return None
    sens, spec = opmod.rates(truth, np.array([r.decision == ABNORMAL for r in known]))
    return {"sensitivity": sens, "specificity": spec, "auroc": auroc(truth, [r.raw_score for r in known]),
            "n_anomalous": int(truth.sum()), "n_normal": int((~truth).sum())}


@dataclass
class TriageConfig(RunOptions, BundleOptions):
    """``source``: DICOM/image/.npz files, folders (searched recursively) or globs; ``out``: where the
    worklist, report and audit log go; ``operating_point``: ``sensitivity=S``, ``auto`` (the bundle's
    point with the highest sensitivity for this precision, else the normal-only threshold) or
    ``none`` (the normal-only threshold); ``labels``: a file,label CSV of known labels and
    ``normal_label`` the label of normal studies (for test sensitivity); ``split``: read from a
    MedMNIST .npz; ``report_images``: thumbnails for this many top ranks; ``audit_key``: a secret
    key file (32+ random bytes) whose HMAC every audit line carries; ``dicom_out``: where each
    scored DICOM instance's results go as DICOM (``sr``: an SR, and heatmap overlays when the
    bundle makes maps)."""

    source: list[str] = field(default_factory=list)
    out: str = ""
    operating_point: str = "auto"
    labels: str | None = None
    normal_label: str | None = None
    split: str = "test"
    report_images: int = 200
    audit_key: str | None = None
    dicom_out: str | None = None


def run_triage(cfg: TriageConfig) -> dict:
    """Score, rank, report and audit every study of ``cfg.source``; return the run's summary."""
    inputs = [p for text in cfg.source for p in source_paths(text)]
    inputs += [p for p in (cfg.labels, cfg.audit_key, cfg.public_key) if p]
    refuse_overlap(cfg.out, "--out", inputs, sealed=[cfg.bundle])
    if cfg.dicom_out:
        refuse_overlap(cfg.dicom_out, "--dicom-out", inputs, sealed=[cfg.bundle])
    out = output_folder(cfg.out, "--out")
    pipe = cfg.pipeline()  # refuses a tampered bundle
    rule = decision_rule(pipe, cfg.operating_point)
    use = IntendedUse.from_manifest(pipe.bundle.manifest)
    labels = read_labels(cfg.labels) if cfg.labels else None
    run = run_info(pipe, rule, cfg.bundle)
    context = result_context(pipe, rule, use, run) if cfg.dicom_out else None  # before anything is written
    out.mkdir(parents=True, exist_ok=True)
    results = ResultWriter(Path(cfg.dicom_out), context) if context else None
    records = []
    with AuditLog(out / AUDIT, key_file=cfg.audit_key) as log:
        studies = iter_studies(cfg.source, labels, cfg.split, pipe.pixel_limit(cfg.max_pixels))
        for study, rec in score_studies(pipe, studies, use, rule, cfg.normal_label, cfg):
            rec.audit_seq, rec.audit_sha256 = log.append(audit_entry(rec, run))
            records.append(rec)
            if results is not None:
                results.add(study.image, rec)
    if results is not None:
        results.flush()
    records = rank(records)
    n_scored = sum(r.status == SCORED for r in records)
    summary = {**run, "time": utc_now(), "n_records": len(records), "n_scored": n_scored,
               "n_not_scored": len(records) - n_scored, "n_abnormal": sum(r.decision == ABNORMAL for r in records),
               "operating_point": rule.point.to_dict() if rule.point else None, "test": test_metrics(records),
               "worklist": str(out / WORKLIST), "report": str(out / REPORT), "audit_log": str(out / AUDIT),
               "audit_head": _head(records), "drift": _drift(pipe, records)}
    if results is not None:
        summary.update(dicom_out=str(cfg.dicom_out), n_dicom_objects=len(results.written))
    if rule.point:
        summary["operating_point"]["threshold"] = rule.threshold
    write_worklist(records, out / WORKLIST)
    write_report(records, summary, out / REPORT, cfg.report_images)
    return summary


def _drift(pipe, records: list[TriageRecord]) -> dict | None:
    """The run's scores against the bundle's held-out normal ones, tested once as a batch (None for
    fewer than 10 scored, a bundle without the held-out percentiles or without a detector)."""
    if pipe.detector is None:
        return None
    report = batch_drift(pipe.threshold_record, [r.raw_score for r in records if r.status == SCORED])
    return report.to_dict() if report else None


def _head(records: list[TriageRecord]) -> dict | None:
    """The run's last audit entry (the chain head it left), which the report shows."""
    last = max(records, key=lambda r: r.audit_seq, default=None)
    return None if last is None else {"seq": last.audit_seq, "sha256": last.audit_sha256}


@dataclass
class OperatingPointConfig(RunOptions, BundleOptions):
    """``sensitivity``: the target (``0.95``); ``normal_label``: the label of normal images; the
    validation images as ``data`` (a dataset, ``split`` of it, ``max_images`` a deterministic random
    subset, 0: all) or as ``source`` paths with a ``labels`` CSV; ``modality``: the DICOM modalities
    the bundle is for (None: those of the validation DICOMs)."""

    sensitivity: str = ""
    normal_label: str = ""
    data: str | None = None
    split: str = "val"
    source: list[str] = field(default_factory=list)
    labels: str | None = None
    max_images: int = 0
    modality: list[str] | None = None


def _validation_studies(cfg: OperatingPointConfig, max_pixels: int) -> Iterator[Study]:
    if bool(cfg.data) == bool(cfg.source):
        raise EdgesslError("give the validation images either as --data DATASET or as --source PATH... --labels CSV")
    if cfg.data:
        ds = open_dataset(cfg.data, cfg.split)
        if cfg.max_images and len(ds) > cfg.max_images:
            ds = ds.subset(np.sort(np.random.RandomState(0).permutation(len(ds))[: cfg.max_images]))
        return dataset_studies(ds)
    if not cfg.labels:
        raise EdgesslError("--source needs --labels CSV (columns file,label) to know which images are anomalous")
    return iter_studies(cfg.source, read_labels(cfg.labels), max_pixels=max_pixels)


def set_operating_point(cfg: OperatingPointConfig) -> dict:
    """Score labelled validation images, choose the point for the target sensitivity, store it in the
    bundle (a classifier-only bundle: on its positive class's probability)."""
    from ..pipeline import Pipeline

    target = opmod.parse_target(cfg.sensitivity)
    pipe = cfg.pipeline()  # refuses a tampered bundle
    classifier_only = pipe.detector is None
    rule = classifier_rule(pipe) if classifier_only else \
        Decision("normal_only", float(pipe.threshold_record.raw_threshold), 1.0)
    raw, anomalous, shapes, modalities, skipped = [], [], [], set(), []
    studies = _labelled(_validation_studies(cfg, pipe.pixel_limit(cfg.max_pixels)), cfg.labels)
    for study, rec in score_studies(pipe, studies, IntendedUse(), rule, cfg.normal_label, cfg):
        if rec.status != SCORED:
            skipped.append(f"{study.key}: {rec.reason}")
            continue
        raw.append(rec.raw_score)
        anomalous.append(rec.anomalous)
        shapes.append(study.image.shape)
        if study.modality:
            modalities.add(study.modality)
    source = f"{cfg.data} ({cfg.split})" if cfg.data else ", ".join(cfg.source)
    normalise = float if classifier_only else pipe.threshold_record.normalise  # p is shown as it is
    point = opmod.fit_operating_point(np.array(raw), np.array(anomalous, bool), target,
                                      normalise, source=source, backend=pipe.backend,
                                      model_identity=opmod.model_identity(pipe.bundle.manifest, pipe.precision_key))
    use = replace(IntendedUse.from_manifest(pipe.bundle.manifest),  # keeps a manufacturer's statement and banner
                  modalities=tuple(cfg.modality) if cfg.modality is not None else tuple(sorted(modalities)),
                  reference_size=reference_size(shapes))
    bundle = opmod.store(cfg.bundle, pipe.precision_key, point, use.to_dict(), based_on=pipe.bundle.hash)
    return {"bundle": str(cfg.bundle), "bundle_hash": bundle.hash, "precision": pipe.precision_key,
            "operating_point": point.to_dict(), "intended_use": use.to_dict(), "skipped": skipped}


def _labelled(studies: Iterable[Study], labels: str | None) -> Iterator[Study]:
    """``studies``, refusing a readable one without a label (every validation image needs one)."""
    for study in studies:
        if study.image is not None and study.label is None:
            raise EdgesslError(f"{study.key}: no label in {labels} (every validation image needs one)")
        yield study
