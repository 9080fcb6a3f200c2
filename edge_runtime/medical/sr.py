"""Triage results as DICOM objects that reference their source instance (built with highdicom,
imported when called): what a PACS shows next to the study.

Per source instance with at least one scored frame:

* a **Comprehensive SR** (``triage_sr``) in the source's study, in a results series of its own
  (one per source series), whose content tree is::

      CONTAINER  Anomaly triage result (99EDGESSL)
        TEXT  Algorithm Name (DCM 111001)            "edgessl anomaly triage"
        TEXT  Algorithm Version (DCM 111003)         the edgessl version
        TEXT  Model bundle SHA-256, Model bundle manifest version, Inference backend, Inference precision
        TEXT  Intended use                           the bundle's intended-use statement
        TEXT  Operating point                        "sensitivity=0.95", "normal-only threshold" or
                                                     "positive-class probability threshold"
        TEXT  Positive class                         a classifier head's, where the bundle names one
        NUM   Decision threshold, Raw decision threshold (no units)
        NUM   Target false-positive rate (%)         of the bundle's normal-only threshold (a detector)
        NUM   Target / validation sensitivity, validation specificity (%)   with an operating point
        CONTAINER  Image result                      one per scored frame
          IMAGE  Source of Measurement (DCM 121112)  the source instance (and frame)
          CODE   Triage decision                     Abnormal (SCT 263654008) / Normal (SCT 17621005)
          NUM    Anomaly score, Raw anomaly score (no units)        a detector
          TEXT   Predicted class                     a classifier head: its most probable class
          NUM    Predicted class probability, Positive class probability (no units, 0-1)

  A bundle with a classifier head and no detector decides on its positive class's probability
  (``triage``): no anomaly score, no false-positive rate, no maps (so no overlay).

  Concepts DICOM has no code for use the private coding scheme ``99EDGESSL``.
* where the bundle makes anomaly maps, a **secondary capture** per scored frame (``overlay_sc``):
  the image under the heatmap, with the intended use's banner ("NOT FOR DIAGNOSIS ...") and the
  score burned into a band above it (``BurnedInAnnotation`` YES), referencing the source image.

UIDs are derived from the source instance, the bundle hash and the object's role (``result_uid``),
so scoring an instance again (after a crash) gives the same SOP Instance UIDs and a PACS keeps one
copy. A decision is *abnormal iff raw score >= raw threshold*, as in ``triage``.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from ..files import write_atomic
from ..heatmaps import overlay
from ..images import to_uint8
from .intended_use import IntendedUse
from .operating_point import OperatingPoint
from .worklist import ABNORMAL, SCORED, TriageRecord

SCHEME = "99EDGESSL"
MANUFACTURER = "edgessl"
ALGORITHM = "edgessl anomaly triage"
SR_SERIES_NUMBER, OVERLAY_SERIES_NUMBER = 9901, 9902
OVERLAY_PX = 512  # the overlay's longer side
HEAT_VMAX = 2.0  # the overlay's colour scale: 0 (median normal) blue .. 2 (twice the threshold) red


@dataclass(frozen=True)
class ResultContext:
    """What every result object states about the model and the decision rule."""

    tool_version: str
    bundle_hash: str
    manifest_version: str
    backend: str
    precision: str
    threshold_kind: str  # "operating_point", "normal_only" or "positive_class" (``triage.Decision``)
    threshold: float  # normalised
    raw_threshold: float
    target_fpr: float | None  # of the normal-only threshold; None: no detector (a classifier head decides)
    intended_use: IntendedUse
    operating_point: OperatingPoint | None = None
    positive_class: str | None = None  # the classifier head's, when the bundle names one

    @functools.cached_property
    def model_items(self) -> list:
        """The SR's content items about the model and the rule: the same in every SR of a run, built
        once (highdicom copies the content it is given)."""
        return _model_items(self)


def result_uid(source_uid: str, bundle_hash: str, role: str) -> str:
    """A UID that is a function of the source instance, the bundle and the object's role."""
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=[source_uid, bundle_hash, role])


# The patient and study attributes highdicom copies from a source into a result (type 2 in the
# source's IODs, so present but possibly empty; some real files leave them out)
COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
          "StudyTime", "ReferringPhysicianName")


def _with_type2(source: Any) -> Any:
    """``source``'s header with each of ``COPIED`` it lacks present and empty."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.update(source)
    ds.file_meta = getattr(source, "file_meta", None) or Dataset()
    for keyword in COPIED:
        if keyword not in ds:
            setattr(ds, keyword, None)
    return ds


def _code(value: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value, SCHEME, meaning)


def _text(name, value: str):
    from highdicom.sr import RelationshipTypeValues, TextContentItem

    return TextContentItem(name=name, value=value, relationship_type=RelationshipTypeValues.CONTAINS)


def _num(name, value: float, percent: bool = False):
    from highdicom.sr import NumContentItem, RelationshipTypeValues
    from pydicom.sr.codedict import codes

    return NumContentItem(name=name, value=float(value), unit=codes.UCUM.Percent if percent else codes.UCUM.NoUnits,
                          relationship_type=RelationshipTypeValues.CONTAINS)


def _model_items(ctx: ResultContext) -> list:
    from pydicom.sr.codedict import codes

    point = ctx.operating_point
    rule = "normal-only threshold" if ctx.target_fpr is not None else "positive-class probability threshold"
    items = [
        _text(codes.DCM.AlgorithmName, ALGORITHM),
        _text(codes.DCM.AlgorithmVersion, ctx.tool_version),
        _text(_code("BUNDLE_SHA256", "Model bundle SHA-256"), ctx.bundle_hash),
        _text(_code("MANIFEST_VERSION", "Model bundle manifest version"), str(ctx.manifest_version)),
        _text(_code("BACKEND", "Inference backend"), ctx.backend),
        _text(_code("PRECISION", "Inference precision"), ctx.precision),
        _text(_code("INTENDED_USE", "Intended use"), ctx.intended_use.statement),
        _text(_code("OPERATING_POINT", "Operating point"), point.name if point else rule),
    ]
    if ctx.positive_class is not None:
        items.append(_text(_code("POSITIVE_CLASS", "Positive class"), ctx.positive_class))
    items += [_num(_code("THRESHOLD", "Decision threshold"), ctx.threshold),
              _num(_code("RAW_THRESHOLD", "Raw decision threshold"), ctx.raw_threshold)]
    if ctx.target_fpr is not None:
        items.append(_num(_code("TARGET_FPR", "Target false-positive rate"), 100 * ctx.target_fpr, percent=True))
    if point is not None:
        items += [_num(_code("TARGET_SENSITIVITY", "Target sensitivity"), 100 * point.target_sensitivity, True),
                  _num(_code("VALIDATION_SENSITIVITY", "Validation sensitivity"), 100 * point.sensitivity, True),
                  _num(_code("VALIDATION_SPECIFICITY", "Validation specificity"), 100 * point.specificity, True)]
    return items


def _frame_item(source: Any, rec: TriageRecord, ctx: ResultContext):
    from highdicom.sr import (CodeContentItem, ContainerContentItem, ImageContentItem,
                              RelationshipTypeValues)
    from pydicom.sr.codedict import codes

    contains = RelationshipTypeValues.CONTAINS
    group = ContainerContentItem(name=_code("IMAGE_RESULT", "Image result"), relationship_type=contains)
    frames = None if rec.frame is None else rec.frame + 1  # DICOM frame numbers start at 1
    decision = codes.SCT.Abnormal if rec.decision == ABNORMAL else codes.SCT.Normal
    items = [
        ImageContentItem(name=codes.DCM.SourceOfMeasurement, referenced_sop_class_uid=source.SOPClassUID,
                         referenced_sop_instance_uid=source.SOPInstanceUID, referenced_frame_numbers=frames,
                         relationship_type=contains),
        CodeContentItem(name=_code("DECISION", "Triage decision"), value=decision, relationship_type=contains),
    ]
    if ctx.target_fpr is not None:
        items += [_num(_code("SCORE", "Anomaly score"), rec.score),
                  _num(_code("RAW_SCORE", "Raw anomaly score"), rec.raw_score)]
    if rec.class_name is not None:
        items += [_text(_code("PREDICTED_CLASS", "Predicted class"), rec.class_name),
                  _num(_code("PREDICTED_PROBABILITY", "Predicted class probability"),
                       rec.probabilities[rec.class_name])]
        if ctx.positive_class is not None:
            items.append(_num(_code("POSITIVE_PROBABILITY", "Positive class probability"),
                              rec.probabilities[ctx.positive_class]))
    group.ContentSequence = items
    return group


def triage_sr(source: Any, records: Sequence[TriageRecord], ctx: ResultContext) -> Any:
    """The Comprehensive SR of ``records`` (the scored frames of the instance ``source``, a pydicom
    Dataset whose header is read), in the source's study."""
    from highdicom.sr import ComprehensiveSR, ContainerContentItem

    source = _with_type2(source)
    root = ContainerContentItem(name=_code("TRIAGE_RESULT", "Anomaly triage result"))
    root.ContentSequence = [*ctx.model_items, *(_frame_item(source, r, ctx) for r in records)]
    sr = ComprehensiveSR(
        evidence=[source], content=root,
        series_instance_uid=result_uid(source.SeriesInstanceUID, ctx.bundle_hash, "sr-series"),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=result_uid(source.SOPInstanceUID, ctx.bundle_hash, "sr"),
        instance_number=int(source.get("InstanceNumber") or 1), manufacturer=MANUFACTURER, is_complete=True)
    sr.SeriesDescription = f"{ALGORITHM} ({ctx.intended_use.banner})"[:64]
    return sr


def overlay_picture(image: np.ndarray, heatmap: np.ndarray, banner: str, caption: str) -> np.ndarray:
    """RGB uint8: ``image`` (grey or RGB) under ``heatmap`` (normalised), longer side ``OVERLAY_PX``,
    below a black band with ``banner`` and ``caption`` in white."""
    img = to_uint8(image)
    h, w = img.shape[:2]
    scale = OVERLAY_PX / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    heat = cv2.resize(np.asarray(heatmap, np.float32), size, interpolation=cv2.INTER_LINEAR)
    picture = overlay(img, heat, vmax=HEAT_VMAX)
    lines = [banner, caption]
    font, thickness = cv2.FONT_HERSHEY_SIMPLEX, 1
    widest = max(cv2.getTextSize(t, font, 1.0, thickness)[0][0] for t in lines)
    font_scale = min(0.8, 0.95 * size[0] / widest)
    line_h = int(round(32 * font_scale)) + 6
    band = np.zeros((line_h * len(lines) + 6, size[0], 3), np.uint8)
    for i, text in enumerate(lines):
        cv2.putText(band, text, (4, line_h * (i + 1)), font, font_scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return np.ascontiguousarray(np.vstack([band, picture]))


def overlay_sc(source: Any, rec: TriageRecord, image: np.ndarray, ctx: ResultContext) -> Any:
    """The secondary capture of one scored frame's heatmap overlay (``rec.heatmap``), in the source's study."""
    from highdicom.sc import SCImage
    from pydicom.dataset import Dataset

    source = _with_type2(source)
    use = ctx.intended_use
    caption = f"anomaly score {rec.score:.2f} ({rec.decision}), threshold {ctx.threshold:.2f}"
    picture = overlay_picture(image, rec.heatmap, use.banner, caption)
    role = "overlay" if rec.frame is None else f"overlay-{rec.frame}"
    orientation = list(source.get("PatientOrientation") or [])
    sc = SCImage.from_ref_dataset(
        ref_dataset=source, pixel_array=picture, photometric_interpretation="RGB", bits_allocated=8,
        coordinate_system="PATIENT", patient_orientation=tuple(orientation) if len(orientation) == 2 else ("L", "F"),
        series_instance_uid=result_uid(source.SeriesInstanceUID, ctx.bundle_hash, "overlay-series"),
        series_number=OVERLAY_SERIES_NUMBER, sop_instance_uid=result_uid(source.SOPInstanceUID, ctx.bundle_hash, role),
        instance_number=int(source.get("InstanceNumber") or 1) * 1000 + (rec.frame or 0), manufacturer=MANUFACTURER)
    if len(orientation) != 2:  # type 2: empty when the source does not say (highdicom needs a value to build)
        sc.PatientOrientation = None
    sc.BurnedInAnnotation = "YES"
    sc.SeriesDescription = f"{ALGORITHM} heatmap ({use.banner})"[:64]
    sc.ImageComments = f"{use.banner}. {caption}. {use.statement}"[:10240]
    sc.DerivationDescription = f"anomaly heatmap over the source image ({ALGORITHM} {ctx.tool_version})"[:1024]
    ref = Dataset()
    ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID = source.SOPClassUID, source.SOPInstanceUID
    if rec.frame is not None:
        ref.ReferencedFrameNumber = rec.frame + 1
    sc.SourceImageSequence = [ref]
    return sc


def result_objects(source: Any, scored: Sequence[tuple[np.ndarray, TriageRecord]], ctx: ResultContext) -> list:
    """The SR of an instance's scored frames and an overlay per frame that has a heatmap (none when no
    frame was scored). ``scored``: (decoded frame, its record) in frame order."""
    done = [(img, rec) for img, rec in scored if rec.status == SCORED]
    if not done:
        return []
    objects = [triage_sr(source, [rec for _, rec in done], ctx)]
    objects += [overlay_sc(source, rec, img, ctx) for img, rec in done if rec.heatmap is not None]
    return objects


def write_results(objects: Sequence[Any], folder: Path) -> list[Path]:
    """Each object as ``folder/<SOP Instance UID>.dcm`` (Part 10, written atomically and fsynced); the paths."""
    paths = []
    for ds in objects:
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        path = folder / f"{ds.SOPInstanceUID}.dcm"
        write_atomic(path, buf.getvalue())
        paths.append(path)
    return paths


def is_own_result(path: Path) -> bool:
    """Whether the DICOM file at ``path`` is one of these result objects (a PACS may route them back)."""
    from pydicom import dcmread

    try:
        ds = dcmread(path, stop_before_pixels=True)
        return str(ds.get("Manufacturer", "")) == MANUFACTURER and int(ds.get("SeriesNumber") or 0) in (
            SR_SERIES_NUMBER, OVERLAY_SERIES_NUMBER)
    except Exception:  # unreadable: triage says why
        return False


class ResultWriter:
    """``triage --dicom-out``: takes scored studies in order and, once all frames of a DICOM file are
    in, writes that instance's result objects into ``folder`` (non-DICOM inputs have none)."""

    def __init__(self, folder: Path, ctx: ResultContext):
        self.folder, self.ctx = Path(folder), ctx
        self._file: str | None = None
        self._frames: list[tuple[np.ndarray, TriageRecord]] = []
        self.written: list[Path] = []

    def add(self, image: np.ndarray | None, rec: TriageRecord) -> None:
        if rec.file != self._file:
            self.flush()
            self._file = rec.file
        if rec.instance_uid and image is not None:
            self._frames.append((image, rec))

    def flush(self) -> None:
        if self._frames and self._file is not None:
            from pydicom import dcmread

            source = dcmread(self._file, stop_before_pixels=True)
            self.written += write_results(result_objects(source, self._frames, self.ctx), self.folder)
        self._frames = []
