"""``edgessl adapt``: confirmed-normal images into the detector's memory banks, as a sealed delta
beside the bundle (``bundle.ADAPT``), never by editing it (the device holds no signing key).

1. Load the bundle with its current adaptation delta (``delta`` False: from the base alone,
   replacing the delta) and refuse, before any image is read, banks of ``max_bank`` rows the device
   cannot hold (below) and a bundle that keeps no held-out fp32 normal scores.
2. Read every image of ``data`` (an image, a folder, a glob, a video); one that cannot be read is
   refused. Run it through each ONNX precision of the bundle that has a threshold record (fp32 and
   each INT8 target ``calibrate`` wrote), on ONNX Runtime's CPU provider. Images the current detector
   flags at fp32 (``CHECKED``), with its current threshold, are refused, named, unless
   ``accept_flagged`` (the user confirms they are normal, typically the new condition itself);
   accepted ones are named in the delta's record.
3. Cross-fit the new images: split, in the order they were read, into ``folds`` contiguous blocks
   (a camera's consecutive frames are near copies: in one block they never score each other, which
   would pull the threshold down); each fold's features at each
   precision are scored by the current detector grown (``Detector.grown``) with the other folds'
   fp32 features, as the runtime scores that precision's features against the delta's bank, so
   every new image has a score per precision from a bank that never held it.
4. For each precision, a threshold (``thresholds.fit_threshold``, the bundle's target false-positive
   rate and confidence for it) from the held-out normal scores the bundle keeps at that precision
   (fp32: ``detector/fit.json``'s cross-fitted scores; INT8: those ``calibrate`` recorded for that
   model in the calibration report; plus those an earlier delta added) and the new cross-fitted
   scores. Growing a bank only lowers nearest-neighbour distances, so the kept scores, from smaller
   banks, err high: conservative. A precision whose kept scores are missing gets no threshold: it is
   named in the record's ``left_out`` and running it with the delta is refused.
5. Write the detector grown with every new image's fp32 features (one bank, for every precision, as
   the base's) as the delta (``bundle_update.replace_delta``): ``adapt/detector.json|npz`` and
   ``adapt/adapt.json`` naming the base bundle's hash, the threshold of each precision, those left
   out, the banks' sizes and the images added with their scores per precision.

TensorRT engines (``build-engine``) get no threshold here: an engine's is re-derived on the device
from the engine's own scores, which this CPU command cannot produce.

**Bound.** Each memory bank holds at most ``max_bank`` rows (``bank_growth``: the base's rows
kept, the room spent greedily on the most novel new rows). A ``max_bank`` whose banks at that
size, as float32 rows, exceed ``bank_mib`` MiB (what the device grants the detector) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends.ort import OrtBackend
from ..bundle import ADAPT, PRECISIONS, Bundle
from ..bundle_update import replace_delta
from ..data.metrics import auroc
from ..detectors import Detector
from ..errors import EdgesslError
from ..graph_scores import features_of
from ..jsonio import parse_json
from ..pipeline import Pipeline
from ..pipeline_options import TrustOptions
from ..thresholds import Threshold, fit_threshold
from ..timestamps import utc_now
from .sources import Source, open_source

CHECKED = "fp32"  # the precision whose current threshold decides which new images are flagged
NAMES_SHOWN = 5


@dataclass
class AdaptConfig(TrustOptions):
    """The bundle, the confirmed-normal images (``data``: a source ``edgessl run`` reads), the most rows
    a memory bank may hold, the MiB the device grants the banks, the cross-fitting folds,
    whether images the current detector flags are added (confirmed normal), images per inference call."""

    bundle: str = ""
    data: str = ""
    max_bank: int = 4096
    bank_mib: float = 256.0
    folds: int = 5
    accept_flagged: bool = False
    batch_size: int = 32


def check_bank_size(detector: Detector, max_bank: int, bank_mib: float) -> None:
    """Refuse banks of ``max_bank`` float32 rows that would take more than ``bank_mib`` MiB together."""
    need = sum(max_bank * bank.shape[1] * 4 for bank in detector.banks().values())
    if need > bank_mib * 2**20:
        raise EdgesslError(f"--max-bank {max_bank}: the {detector.kind} detector's memory banks would take "
                           f"{need / 2**20:.1f} MiB, more than the device's {bank_mib:g} MiB (--bank-mib); lower "
                           "--max-bank")


def onnx_precisions(bundle: Bundle) -> list[str]:
    """The bundle's ONNX precisions that have a threshold record (fp32 and each calibrated INT8 target)."""
    thresholds, models = bundle.manifest.get("thresholds", {}), bundle.manifest.get("precisions", {})
    return [key for key in PRECISIONS if key in thresholds and key in models]


def calibration_report(bundle: Bundle) -> dict:
    """The calibration report inside the bundle (``calibrate``'s), ``{}`` when there is none."""
    rel = bundle.manifest.get("calibration", {}).get("report")
    if not isinstance(rel, str) or rel not in bundle.manifest.get("files", {}):
        return {}
    report = parse_json(bundle.read(rel), f"{bundle.root}/{rel}")
    return report if isinstance(report, dict) else {}


def calibrated_scores(report: dict, key: str) -> list | None:
    """The held-out normal scores ``calibrate`` recorded in ``report`` for the INT8 model ``key``
    (None when it recorded none)."""
    entries = [report.get(part, {}).get(key) for part in ("targets", "earlier_targets")]
    scores = next((e.get("holdout_normal_scores") for e in entries if isinstance(e, dict)), None)
    return scores if isinstance(scores, list) and scores and all(isinstance(v, (int, float)) for v in scores) else None


def kept_scores(bundle: Bundle, report: dict, key: str) -> np.ndarray | None:
    """The held-out normal scores the bundle keeps for the precision ``key`` (fp32: ``fit.json``'s
    cross-fitted ones; INT8: those ``calibrate`` recorded for that model in ``report``) and those of
    the images the loaded adaptation delta added, at ``key``; None when either is missing."""
    if key == "fp32":
        parts = bundle.fit_record().get("holdout", {}).get("parts", [])
        base = [v for p in parts for v in p["raw_scores"]] or None
    else:
        base = calibrated_scores(report, key)
    added = [] if bundle.adapt is None else bundle.adapt.record["added"]["raw_scores"].get(key)
    return None if base is None or added is None else np.asarray(base + added, np.float64)


def coverage_gap(criteria: dict, kept: np.ndarray, added: np.ndarray, kept32: np.ndarray,
                 added32: np.ndarray) -> str | None:
    """Why an INT8 model cannot take the adaptation: the AUROC that separates the new images'
    cross-fitted scores (``added``) from its kept normal scores (``kept``) differs from fp32's
    (``added32`` from ``kept32``) by more than the calibration gate's ``max_auroc_change`` in
    ``criteria`` (its INT8 ranges, calibrated on the earlier normal images, do not cover the new
    condition, so its scores of it drift from fp32's); None when within."""
    most = criteria.get("max_auroc_change")
    if not isinstance(most, (int, float)):
        return "the calibration report records no gate to check the INT8 model's scores of the new images with"
    labels = np.r_[np.zeros(len(kept32)), np.ones(len(added32))]
    fp32 = auroc(labels, np.r_[kept32, added32])
    got = auroc(np.r_[np.zeros(len(kept)), np.ones(len(added))], np.r_[kept, added])
    if abs(got - fp32) > most:
        return (f"it separates the new images from the kept normals with AUROC {got:.3f}, fp32 with {fp32:.3f}: a "
                f"change over the calibration gate's {most:g}, so its INT8 ranges do not cover the new condition "
                "(calibrate on data that includes it)")
    return None


def read_outputs(pipe: Pipeline, runners: dict[str, OrtBackend], data: str | Source,
                 batch_size: int) -> tuple[list[str], dict[str, dict[str, np.ndarray]], np.ndarray]:
    """The names of ``data``'s images (a source ``open_source`` reads, or a ``Source`` at hand), the
    network's feature outputs for them at each precision of ``runners`` (``pipe`` runs fp32) and the
    current detector's raw scores (``pipe``'s); an image that cannot be read is refused."""
    source = open_source(data, max_pixels=pipe.pixel_limit()) if isinstance(data, str) else data
    if source.live:
        source.close()
        raise EdgesslError(f"--data {data}: a live source; adapt reads a set of saved frames (a folder, a glob, a video)")
    names, scores, pending = [], [], []
    batches: dict[str, list[dict[str, np.ndarray]]] = {key: [] for key in runners}

    def flush() -> None:
        batch = np.stack([p.tensor for p in pending])
        outputs = pipe.infer(batch)
        scores.append(pipe.detector_output(outputs).raw_scores)
        for key, runner in runners.items():
            batches[key].append(features_of(outputs if runner is pipe.runner else runner.run(batch)))
        pending.clear()

    for frame in source:
        if frame.error is not None:
            raise EdgesslError(f"--data: {frame.name}: {frame.error}; adapt adds only images it can read (remove it)")
        names.append(frame.name)
        pending.append(pipe.prepare(frame.image))
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if not names:
        raise EdgesslError(f"--data {data}: no images")
    features = {key: {k: np.concatenate([b[k] for b in parts]) for k in parts[0]} for key, parts in batches.items()}
    return names, features, np.concatenate(scores)


def check_flagged(names: list[str], flagged: np.ndarray, accept: bool) -> list[str]:
    """The names of the flagged images; refused unless ``accept``."""
    which = [n for n, f in zip(names, flagged) if f]
    if which and not accept:
        shown = ", ".join(which[:NAMES_SHOWN]) + (f" and {len(which) - NAMES_SHOWN} more" if len(which) > NAMES_SHOWN else "")
        raise EdgesslError(f"{len(which)} of the {len(names)} images score as anomalies under the current detector "
                           f"({shown}); adapt adds confirmed-normal images only: remove them, or pass --accept-flagged "
                           "if they are normal")
    return which


def crossfit_scores(detector: Detector, rows: dict[str, np.ndarray], queries: dict[str, dict[str, np.ndarray]],
                    folds: int, max_bank: int) -> dict[str, np.ndarray]:
    """Each new image's raw score at each precision of ``queries`` (its features there) under
    ``detector`` grown with the other folds' ``rows`` (the fp32 features the delta's banks take)."""
    n = len(next(iter(rows.values())))
    fold = np.arange(n) * folds // n  # contiguous blocks in reading order (step 3)
    scores = {key: np.empty(n, np.float64) for key in queries}
    for f in range(folds):
        held = fold == f
        grown = detector.grown({k: v[~held] for k, v in rows.items()}, max_bank)
        for key, outputs in queries.items():
            scores[key][held] = grown.score({k: v[held] for k, v in outputs.items()}).raw_scores
    return scores


def _current_threshold(bundle: Bundle, key: str) -> Threshold:
    """The threshold the bundle runs ``key`` with now: the loaded delta's, else the base's."""
    return Threshold.from_dict(bundle.threshold(key) if bundle.adapt is None else bundle.adapt_threshold(key))


def adapt_bundle(cfg: AdaptConfig, frames: Source | None = None) -> dict:
    """Steps 1-5 of the module docstring; returns a JSON-able summary. ``frames``: the images at hand
    (a running node's recent camera frames) instead of reading ``cfg.data``, which then only names
    where they came from in the delta's record."""
    if cfg.max_bank < 1 or cfg.bank_mib <= 0 or cfg.folds < 2 or cfg.batch_size < 1:
        raise EdgesslError("--max-bank and --batch-size must be at least 1, --folds at least 2 and --bank-mib positive")
    bundle = Bundle.load(cfg.bundle, public_key=cfg.public_key, expect_sha256=cfg.expect_sha256, delta=cfg.delta,
                         require_signed_delta=cfg.require_signed_delta)
    if "detector" not in bundle.manifest:
        raise EdgesslError(f"{cfg.bundle}: the bundle has no anomaly detector (a classifier only); nothing to adapt")
    report = calibration_report(bundle)
    kept = {key: kept_scores(bundle, report, key) for key in onnx_precisions(bundle)}
    if kept.get(CHECKED) is None:
        raise EdgesslError(f"{bundle.root}: the bundle keeps no held-out normal scores (detector/fit.json), so no "
                           "threshold can be re-derived; re-export it with this edgessl")
    earlier_out = {} if bundle.adapt is None else bundle.adapt.record.get("left_out", {})
    left_out = {key: earlier_out.get(key, f"no held-out normal {key} scores kept")
                for key, scores in kept.items() if scores is None}
    kept = {key: scores for key, scores in kept.items() if scores is not None}
    current = bundle.detector() if bundle.adapt is None else bundle.adapted_detector()
    check_bank_size(current, cfg.max_bank, cfg.bank_mib)
    runners = {key: OrtBackend(bundle.model_bytes(key), bundle.model_name(key), "ort-cpu") for key in kept}
    before = {key: _current_threshold(bundle, key) for key in kept}
    bundle.release_files()
    pipe = Pipeline(bundle, runners[CHECKED], current, CHECKED, before[CHECKED])
    names, features, scores = read_outputs(pipe, runners, cfg.data if frames is None else frames, cfg.batch_size)
    if len(names) < cfg.folds:
        raise EdgesslError(f"--data has {len(names)} images, fewer than --folds {cfg.folds}; add images or lower --folds")
    flagged = check_flagged(names, before[CHECKED].is_anomaly(scores), cfg.accept_flagged)
    added = crossfit_scores(current, features[CHECKED], features, cfg.folds, cfg.max_bank)
    gaps = {key: coverage_gap(report.get("gate_criteria", {}), held, added[key], kept[CHECKED], added[CHECKED])
            for key, held in kept.items() if key != CHECKED}
    left_out.update({key: gap for key, gap in gaps.items() if gap is not None})
    kept = {key: held for key, held in kept.items() if key not in left_out}
    thresholds = {}
    for key, held in kept.items():
        base = Threshold.from_dict(bundle.threshold(key))
        thresholds[key] = fit_threshold(np.concatenate([held, added[key]]), base.requested_target_fpr or base.target_fpr,
                                        base.confidence, strict=False)
    grown = current.grown(features[CHECKED], cfg.max_bank)
    earlier = bundle.adapt.record["added"] if bundle.adapt is not None else \
        {"images": 0, "names": [], "flagged": [], "raw_scores": {key: [] for key in kept}, "data": []}
    body = {
        "created": utc_now(), "detector": grown.kind, "max_bank": cfg.max_bank,
        "banks": {name: len(bank) for name, bank in grown.banks().items()},
        "thresholds": {key: t.to_dict() for key, t in thresholds.items()}, "left_out": left_out,
        "added": {"images": earlier["images"] + len(names), "names": earlier["names"] + names,
                  "flagged": earlier["flagged"] + flagged,
                  "raw_scores": {key: earlier["raw_scores"][key] + added[key].tolist() for key in kept},
                  "data": earlier["data"] + [cfg.data], "folds": cfg.folds},
    }

    def fill(folder: Path, _old: Bundle) -> dict:
        grown.save(folder)
        return body

    replace_delta(bundle.root, ADAPT, fill, bundle.hash)
    return {"bundle": str(bundle.root), "base_sha256": bundle.hash, "delta": str(bundle.root / ADAPT.folder),
            "images": len(names), "flagged": flagged, "banks": body["banks"],
            "banks_before": {name: len(bank) for name, bank in current.banks().items()},
            "thresholds": {key: {"before": before[key].raw_threshold, "after": t.raw_threshold}
                           for key, t in thresholds.items()},
            "left_out": left_out, "target_fpr": thresholds[CHECKED].target_fpr,
            "held_out": len(kept[CHECKED]) + len(names),
            "flagged_fraction_before": float(np.mean(before[CHECKED].is_anomaly(scores))),
            "flagged_fraction_after": float(np.mean(thresholds[CHECKED].is_anomaly(added[CHECKED])))}


def adapt_line(s: dict) -> str:
    """``adapt_bundle``'s summary ``s`` in one line: images added and flagged, banks and thresholds
    before and after, the precisions left out."""
    flagged = f", {len(s['flagged'])} of them flagged by the detector before (accepted)" if s["flagged"] else ""
    banks = ", ".join(f"{name} {s['banks_before'][name]} -> {rows} rows" for name, rows in s["banks"].items())
    thresholds = ", ".join(f"{key} {t['before']:.4g} -> {t['after']:.4g}" for key, t in s["thresholds"].items())
    left_out = "".join(f"; {key} left out, running it with the delta is refused: {why}"
                       for key, why in s["left_out"].items())
    return (f"{s['images']} images added{flagged}; banks {banks}; thresholds {thresholds} (target FPR "
            f"{s['target_fpr']:.4g}, {s['held_out']} held-out normal scores){left_out}")
