"""``edgessl adapt``: confirmed-normal images into the detector's memory banks, as a sealed delta
beside the bundle (``bundle.ADAPT``), never by editing it (the device holds no signing key).

1. Load the bundle as the device runs it, fp32 on ONNX Runtime's CPU provider, with its current
   adaptation delta (``delta`` False: from the base alone, replacing the delta), and refuse, before
   any image is read, banks of ``max_bank`` rows the device cannot hold (below) and a bundle that
   keeps no held-out normal scores.
2. Read every image of ``data`` (an image, a folder, a glob, a video); one that cannot be read is
   refused. Score them with the current detector and threshold: images it flags as anomalous are
   refused, named, unless ``accept_flagged`` (the user confirms they are normal, typically the new
   condition itself); accepted ones are named in the delta's record.
3. Cross-fit the new images: split into ``folds`` seeded folds, each scored by the current detector
   grown (``Detector.grown``) with the other folds' features, so every new image has a score from
   a bank that never held it.
4. Threshold (``thresholds.fit_threshold``, the bundle's target false-positive rate and confidence)
   from the held-out normal scores the bundle keeps (``detector/fit.json``'s cross-fitted scores,
   and those an earlier delta added) plus the new cross-fitted scores. Growing a bank only lowers
   nearest-neighbour distances, so the kept scores, from smaller banks, err high: conservative.
5. Write the detector grown with every new image as the delta (``bundle_update.replace_delta``):
   ``adapt/detector.json|npz`` and ``adapt/adapt.json`` naming the base bundle's hash, the threshold
   (for ``fp32``), the banks' sizes and the images added.

**Bound.** Each memory bank holds at most ``max_bank`` rows (``bank_growth``: the base's rows
kept, the room spent greedily on the most novel new rows). A ``max_bank`` whose banks at that
size, as float32 rows, exceed ``bank_mib`` MiB (what the device grants the detector) is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..bundle import ADAPT, Bundle
from ..bundle_update import replace_delta
from ..detectors import Detector
from ..errors import EdgesslError
from ..graph_scores import features_of
from ..pipeline import Pipeline
from ..pipeline_options import TrustOptions
from ..thresholds import Threshold, fit_threshold
from ..timestamps import utc_now
from .sources import Source, open_source

PRECISION = "fp32"  # the precision the delta's threshold is for: the held-out scores the bundle keeps are fp32's
NAMES_SHOWN = 5


@dataclass
class AdaptConfig(TrustOptions):
    """The bundle, the confirmed-normal images (``data``: a source ``edgessl run`` reads), the most rows
    a memory bank may hold, the MiB the device grants the banks, the cross-fitting folds and seed,
    whether images the current detector flags are added (confirmed normal), images per inference call."""

    bundle: str = ""
    data: str = ""
    max_bank: int = 4096
    bank_mib: float = 256.0
    folds: int = 5
    seed: int = 0
    accept_flagged: bool = False
    batch_size: int = 32


def check_bank_size(detector: Detector, max_bank: int, bank_mib: float) -> None:
    """Refuse banks of ``max_bank`` float32 rows that would take more than ``bank_mib`` MiB together."""
    need = sum(max_bank * bank.shape[1] * 4 for bank in detector.banks().values())
    if need > bank_mib * 2**20:
        raise EdgesslError(f"--max-bank {max_bank}: the {detector.kind} detector's memory banks would take "
                           f"{need / 2**20:.1f} MiB, more than the device's {bank_mib:g} MiB (--bank-mib); lower "
                           "--max-bank")


def kept_scores(bundle: Bundle) -> np.ndarray:
    """The held-out normal scores the bundle keeps: ``fit.json``'s cross-fitted ones and those of the
    images the loaded adaptation delta added."""
    parts = bundle.fit_record().get("holdout", {}).get("parts", [])
    if not parts:
        raise EdgesslError(f"{bundle.root}: the bundle keeps no held-out normal scores (detector/fit.json), so no "
                           "threshold can be re-derived; re-export it with this edgessl")
    scores = [np.asarray(p["raw_scores"], np.float64) for p in parts]
    if bundle.adapt is not None:
        scores.append(np.asarray(bundle.adapt.record["added"]["raw_scores"], np.float64))
    return np.concatenate(scores)


def read_outputs(pipe: Pipeline, data: str | Source, batch_size: int) -> tuple[list[str], dict[str, np.ndarray], np.ndarray]:
    """The names of ``data``'s images (a source ``open_source`` reads, or a ``Source`` at hand), the
    network's feature outputs for them and the current detector's raw scores; an image that cannot
    be read is refused."""
    source = open_source(data, max_pixels=pipe.pixel_limit()) if isinstance(data, str) else data
    if source.live:
        source.close()
        raise EdgesslError(f"--data {data}: a live source; adapt reads a set of saved frames (a folder, a glob, a video)")
    names, batches, scores, pending = [], [], [], []

    def flush() -> None:
        outputs = pipe.infer(np.stack([p.tensor for p in pending]))
        scores.append(pipe.detector_output(outputs).raw_scores)
        batches.append(features_of(outputs))
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
    return names, {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}, np.concatenate(scores)


def check_flagged(names: list[str], flagged: np.ndarray, accept: bool) -> list[str]:
    """The names of the flagged images; refused unless ``accept``."""
    which = [n for n, f in zip(names, flagged) if f]
    if which and not accept:
        shown = ", ".join(which[:NAMES_SHOWN]) + (f" and {len(which) - NAMES_SHOWN} more" if len(which) > NAMES_SHOWN else "")
        raise EdgesslError(f"{len(which)} of the {len(names)} images score as anomalies under the current detector "
                           f"({shown}); adapt adds confirmed-normal images only: remove them, or pass --accept-flagged "
                           "if they are normal")
    return which


def crossfit_scores(detector: Detector, outputs: dict[str, np.ndarray], folds: int, seed: int,
                    max_bank: int) -> np.ndarray:
    """Each new image's raw score under ``detector`` grown with the other folds' images."""
    n = len(next(iter(outputs.values())))
    fold = np.random.default_rng(seed).permutation(np.arange(n) % folds)
    scores = np.empty(n, np.float64)
    for f in range(folds):
        held = fold == f
        grown = detector.grown({k: v[~held] for k, v in outputs.items()}, max_bank)
        scores[held] = grown.score({k: v[held] for k, v in outputs.items()}).raw_scores
    return scores


def adapt_bundle(cfg: AdaptConfig, frames: Source | None = None) -> dict:
    """Steps 1-5 of the module docstring; returns a JSON-able summary. ``frames``: the images at hand
    (a running node's recent camera frames) instead of reading ``cfg.data``, which then only names
    where they came from in the delta's record."""
    if cfg.max_bank < 1 or cfg.bank_mib <= 0 or cfg.folds < 2 or cfg.batch_size < 1:
        raise EdgesslError("--max-bank and --batch-size must be at least 1, --folds at least 2 and --bank-mib positive")
    trust = {"public_key": cfg.public_key, "expect_sha256": cfg.expect_sha256, "delta": cfg.delta,
             "require_signed_delta": cfg.require_signed_delta}
    held = kept_scores(Bundle.load(cfg.bundle, **trust))  # the pipeline drops the files it has read
    pipe = Pipeline.load(cfg.bundle, backend="ort-cpu", precision=PRECISION, **trust)
    bundle, current = pipe.bundle, pipe.detector
    if current is None:
        raise EdgesslError(f"{cfg.bundle}: the bundle has no anomaly detector (a classifier only); nothing to adapt")
    check_bank_size(current, cfg.max_bank, cfg.bank_mib)
    names, outputs, scores = read_outputs(pipe, cfg.data if frames is None else frames, cfg.batch_size)
    if len(names) < cfg.folds:
        raise EdgesslError(f"--data has {len(names)} images, fewer than --folds {cfg.folds}; add images or lower --folds")
    flagged = check_flagged(names, pipe.threshold_record.is_anomaly(scores), cfg.accept_flagged)
    added = crossfit_scores(current, outputs, cfg.folds, cfg.seed, cfg.max_bank)
    base = Threshold.from_dict(bundle.threshold(PRECISION))
    threshold = fit_threshold(np.concatenate([held, added]), base.requested_target_fpr or base.target_fpr,
                              base.confidence, strict=False)
    grown = current.grown(outputs, cfg.max_bank)
    before = bundle.adapt.record["added"] if bundle.adapt is not None else \
        {"images": 0, "names": [], "flagged": [], "raw_scores": [], "data": []}
    body = {
        "created": utc_now(), "detector": grown.kind, "max_bank": cfg.max_bank,
        "banks": {name: len(bank) for name, bank in grown.banks().items()},
        "thresholds": {PRECISION: threshold.to_dict()},
        "added": {"images": before["images"] + len(names), "names": before["names"] + names,
                  "flagged": before["flagged"] + flagged, "raw_scores": before["raw_scores"] + added.tolist(),
                  "data": before["data"] + [cfg.data], "folds": cfg.folds, "seed": cfg.seed},
    }

    def fill(folder: Path, _old: Bundle) -> dict:
        grown.save(folder)
        return body

    replace_delta(bundle.root, ADAPT, fill, bundle.hash)
    return {"bundle": str(bundle.root), "base_sha256": bundle.hash, "delta": str(bundle.root / ADAPT.folder),
            "images": len(names), "flagged": flagged, "banks": body["banks"],
            "banks_before": {name: len(bank) for name, bank in current.banks().items()},
            "threshold_before": pipe.threshold_record.raw_threshold, "threshold": threshold.raw_threshold,
            "target_fpr": threshold.target_fpr, "held_out": len(held) + len(added),
            "flagged_fraction_before": float(np.mean(pipe.threshold_record.is_anomaly(scores))),
            "flagged_fraction_after": float(np.mean(threshold.is_anomaly(added)))}
