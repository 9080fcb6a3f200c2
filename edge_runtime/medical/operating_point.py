"""Operating points for triage: a threshold chosen on labelled validation images for a target sensitivity.

**Rule.** Decision: *abnormal iff raw score >= t*. Sensitivity ``sens(t)`` = fraction of validation
anomalies with raw score >= ``t``; it falls as ``t`` rises. The operating point for a target
sensitivity ``s`` is the **largest** ``t`` with ``sens(t) >= s``: with the anomalies' raw scores
sorted from high to low, ``a_1 >= a_2 >= ... >= a_m``, it is ``t = a_k`` with ``k = ceil(s * m)``.
Being the largest such ``t``, it gives the highest specificity that the validation set allows at
that sensitivity; ``specificity`` = fraction of validation normals with raw score < ``t``.

It is stored in the bundle manifest, per precision key (each model scores differently), by name::

    operating_points[precision_key]["sensitivity=0.95"] = OperatingPoint.to_dict()

written through ``bundle_update.update_bundle`` (verified first, so a tampered bundle is never
re-blessed; re-sealed; swapped in at once). ``model_identity`` ties the point to the precision's
model file and the detector's files: once either changes (re-fit, re-calibration), the point is
refused. ``intended_use`` (optional) records the modalities and image size the bundle is for (see
``IntendedUse``).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, fields
from ..timestamps import utc_now
from pathlib import Path

import numpy as np

from ..bundle import Bundle
from ..bundle_update import update_bundle
from ..errors import EdgesslError

MIN_PER_CLASS = 5


def parse_target(text: str) -> float:
    """``sensitivity=0.95`` (or ``0.95``, or ``95%``) to 0.95."""
    value = text.split("=", 1)[1] if "=" in text else text
    if "=" in text and text.split("=", 1)[0].strip() != "sensitivity":
        raise EdgesslError(f"operating point {text!r}: only sensitivity=S is supported (e.g. sensitivity=0.95)")
    try:
        s = float(value.rstrip("%")) / (100.0 if value.endswith("%") else 1.0)
    except ValueError:
        raise EdgesslError(f"operating point {text!r}: expected sensitivity=S with S in (0, 1]") from None
    if not 0.0 < s <= 1.0:
        raise EdgesslError(f"target sensitivity must be in (0, 1], got {s:g}")
    return s


def point_name(target: float) -> str:
    return f"sensitivity={target:g}"


@dataclass(frozen=True)
class OperatingPoint:
    """A sensitivity operating point and what it gave on the validation set."""

    name: str
    target_sensitivity: float
    raw_threshold: float  # abnormal iff raw score >= raw_threshold
    threshold: float  # the same threshold in normalised units (the bundle's normal-only threshold is 1.0)
    sensitivity: float  # on the validation anomalies (>= target)
    specificity: float  # on the validation normals
    n_anomalous: int
    n_normal: int
    source: str = ""  # the validation data
    backend: str = ""
    created: str = ""
    model_identity: str = ""  # see ``model_identity``: the point is void once the model or detector changes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "OperatingPoint":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def rates(anomalous: np.ndarray, abnormal: np.ndarray) -> tuple[float, float]:
    """(sensitivity, specificity) of decisions ``abnormal`` against truth ``anomalous`` (NaN when a class is absent)."""
    anomalous, abnormal = np.asarray(anomalous, bool), np.asarray(abnormal, bool)
    n_pos, n_neg = int(anomalous.sum()), int((~anomalous).sum())
    sens = float((abnormal & anomalous).sum() / n_pos) if n_pos else float("nan")
    spec = float((~abnormal & ~anomalous).sum() / n_neg) if n_neg else float("nan")
    return sens, spec


def choose(raw: np.ndarray, anomalous: np.ndarray, target: float) -> tuple[float, float, float]:
    """The rule of the module docstring: ``(raw_threshold, sensitivity, specificity)``."""
    raw, anomalous = np.asarray(raw, np.float64), np.asarray(anomalous, bool)
    m, n = int(anomalous.sum()), int((~anomalous).sum())
    if m < MIN_PER_CLASS or n < MIN_PER_CLASS:
        raise EdgesslError(f"an operating point needs at least {MIN_PER_CLASS} labelled anomalous and "
                           f"{MIN_PER_CLASS} normal validation images (got {m} anomalous, {n} normal); "
                           "check --normal-label and the validation data")
    k = max(1, math.ceil(target * m - 1e-9))
    t = float(np.sort(raw[anomalous])[::-1][k - 1])
    sens, spec = rates(anomalous, raw >= t)
    return t, sens, spec


def model_identity(manifest: dict, key: str) -> str:
    """sha256 over the recorded hashes of the precision's model file and the detector's files."""
    files = manifest.get("files", {})
    model = manifest.get("precisions", {}).get(key, {}).get("model", "")
    detector = manifest.get("detector", {}).get("directory", "detector").rstrip("/") + "/"
    parts = sorted((rel, digest) for rel, digest in files.items() if rel == model or rel.startswith(detector))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def check_current(manifest: dict, key: str, point: OperatingPoint) -> None:
    """Refuse a point set for another model or detector (re-calibrated, re-fitted) than the bundle now has."""
    if point.model_identity != model_identity(manifest, key):
        raise EdgesslError(f"operating point {point.name} for {key} was set on a different model or detector "
                           "than this bundle now holds; set it again with `edgessl operating-point`")


def fit_operating_point(raw: np.ndarray, anomalous: np.ndarray, target: float, normalise,
                        source: str = "", backend: str = "", model_identity: str = "") -> OperatingPoint:
    """Choose the point on validation raw scores; ``normalise`` maps raw to the bundle's units."""
    t, sens, spec = choose(raw, anomalous, target)
    return OperatingPoint(name=point_name(target), target_sensitivity=float(target), raw_threshold=t,
                          threshold=float(normalise(t)), sensitivity=sens, specificity=spec,
                          n_anomalous=int(np.sum(anomalous)), n_normal=int(np.sum(~np.asarray(anomalous, bool))),
                          source=source, backend=backend, model_identity=model_identity,
                          created=utc_now())


def stored_points(manifest: dict, key: str) -> dict[str, OperatingPoint]:
    return {name: OperatingPoint.from_dict(d) for name, d in manifest.get("operating_points", {}).get(key, {}).items()}


def select_point(manifest: dict, key: str, request: str) -> OperatingPoint | None:
    """The point a run uses: ``none`` -> None (normal-only threshold); ``auto`` -> the stored point with
    the highest target sensitivity for this precision, or None when there is none; ``sensitivity=S`` ->
    that stored point, or ``EdgesslError`` naming what the bundle has."""
    points = stored_points(manifest, key)
    if request == "none":
        return None
    if request == "auto":
        return max(points.values(), key=lambda p: p.target_sensitivity) if points else None
    name = point_name(parse_target(request))
    if name not in points:
        have = ", ".join(points) or "none"
        raise EdgesslError(f"the bundle has no operating point {name} for {key} (has: {have}); set one with "
                           f"`edgessl operating-point --bundle B --data VALIDATION --normal-label L "
                           f"--sensitivity {name.split('=')[1]}`")
    return points[name]


def store(bundle_path: str | Path, key: str, point: OperatingPoint, intended_use: dict | None = None,
          based_on: str | None = None) -> Bundle:
    """Add ``point`` (and ``intended_use`` when given) to the bundle's manifest through ``update_bundle``."""
    def add(_: Path, manifest: dict) -> dict:
        points = manifest.setdefault("operating_points", {})
        points.setdefault(key, {})[point.name] = point.to_dict()
        if intended_use is not None:
            manifest["intended_use"] = intended_use
        return manifest

    return update_bundle(bundle_path, add, based_on=based_on)
