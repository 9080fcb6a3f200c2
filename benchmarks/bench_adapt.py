"""Adaptation on real images: a brighter camera's false positives back to the target, the original
test set's AUROC kept.

One bundle (``timing_bundle``: resnet18 at 32 px, ``fit``'s default detector on ELPV's training
normals by default). The shifted normal condition is a camera 1.6x brighter (``bench_drift``'s).
``edgessl adapt`` adds ``--adapt-images`` training normals, brightened, to a copy of the bundle
(all accepted: they are normal, though the base flags many); then, before and after:

* the false-positive rate on the brightened *test* normals (images adapt never saw), against the
  bundle's target;
* the false-positive rate on the test normals as they are;
* AUROC on the original test set (normals against the anomaly class), which should drop by at
  most 0.01, and the fraction of its anomalies flagged at the threshold;

and the memory banks' sizes and adapt's seconds.

    python benchmarks/bench_adapt.py [--data ../shared/data/elpv/solar_cell] [--normal-label good]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import cv2
import numpy as np

from bench_drift import CHANGES, DATA
from bench_quality import cpu_flags
from edgessl.edge_runtime.data.datasets import open_dataset, resolve_label
from edgessl.edge_runtime.data.metrics import auroc
from edgessl.edge_runtime.pipeline import Pipeline
from edgessl.edge_runtime.streams.adapt import AdaptConfig, adapt_bundle
from timing_bundle import timing_bundle

SHIFT = "1.6x brighter"


def raw_scores(pipe: Pipeline, images: list[np.ndarray], batch: int = 64) -> np.ndarray:
    return np.concatenate([[r.raw_score for r in pipe.score_batch(images[i : i + batch])]
                           for i in range(0, len(images), batch)])


def measure(pipe: Pipeline, shifted: list[np.ndarray], normals: list[np.ndarray], anomalies: list[np.ndarray]) -> dict:
    """FPR on the shifted and the plain test normals, AUROC of plain normals against anomalies and the
    fraction of anomalies flagged."""
    s_shift, s_norm, s_anom = (raw_scores(pipe, x) for x in (shifted, normals, anomalies))
    th = pipe.threshold_record
    labels = np.r_[np.zeros(len(s_norm)), np.ones(len(s_anom))].astype(np.int64)
    return {"fpr_shifted": float(th.is_anomaly(s_shift).mean()), "fpr_plain": float(th.is_anomaly(s_norm).mean()),
            "auroc": auroc(labels, np.r_[s_norm, s_anom]), "recall": float(th.is_anomaly(s_anom).mean()),
            "target": th.target_fpr, "threshold": th.raw_threshold,
            "banks": {k: len(v) for k, v in pipe.detector.banks().items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "elpv" / "solar_cell"))
    ap.add_argument("--normal-label", default="good")
    ap.add_argument("--anomaly-label", default="defect")
    ap.add_argument("--work", default="runs/bench_adapt")
    ap.add_argument("--adapt-images", type=int, default=200)
    ap.add_argument("--max-bank", type=int, default=AdaptConfig.max_bank)
    args = ap.parse_args()
    work = Path(args.work)
    base, _ = timing_bundle(work, 32, 1, data=args.data, normal_label=args.normal_label, int8=False)
    shift = CHANGES[SHIFT]
    train, test = open_dataset(args.data, "train"), open_dataset(args.data, "test")
    normal, anomaly = resolve_label(test, args.normal_label), resolve_label(test, args.anomaly_label)
    frames = work / "shifted_frames"
    shutil.rmtree(frames, ignore_errors=True)
    frames.mkdir()
    picked = np.flatnonzero(train.labels == resolve_label(train, args.normal_label))
    picked = picked[np.linspace(0, len(picked) - 1, args.adapt_images).round().astype(int)]
    for i in picked:
        cv2.imwrite(str(frames / f"{i:05d}.png"), shift(train.image(int(i))))
    normals = [test.image(int(i)) for i in np.flatnonzero(test.labels == normal)]
    anomalies = [test.image(int(i)) for i in np.flatnonzero(test.labels == anomaly)]
    shifted = [shift(img) for img in normals]
    bundle = work / "adapted"
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.copytree(base, bundle)

    before = measure(Pipeline.load(bundle, backend="ort-cpu"), shifted, normals, anomalies)
    t0 = time.perf_counter()
    summary = adapt_bundle(AdaptConfig(bundle=str(bundle), data=str(frames), max_bank=args.max_bank,
                                       accept_flagged=True))
    seconds = time.perf_counter() - t0
    after = measure(Pipeline.load(bundle, backend="ort-cpu"), shifted, normals, anomalies)

    print(f"\nAdaptation to a {SHIFT} camera on {args.data}: {len(picked)} brightened training normals added "
          f"({len(summary['flagged'])} flagged by the base detector, accepted), {Pipeline.load(bundle).detector.kind} "
          f"detector, --max-bank {args.max_bank}; judged on {len(normals)} test normals (brightened and as they are) "
          f"and {len(anomalies)} {args.anomaly_label} images. CPU: {cpu_flags()}")
    print(f"| | target FPR | FPR, brightened test normals | FPR, test normals | AUROC, original test set | "
          f"{args.anomaly_label} flagged | banks (rows) | raw threshold |\n|---|---|---|---|---|---|---|---|")
    for name, m in (("base bundle", before), ("with the adaptation delta", after)):
        banks = ", ".join(f"{k} {v}" for k, v in m["banks"].items())
        print(f"| {name} | {m['target']:.3g} | {m['fpr_shifted']:.3f} | {m['fpr_plain']:.3f} | {m['auroc']:.4f} | "
              f"{m['recall']:.3f} | {banks} | {m['threshold']:.4g} |")
    print(f"\nAUROC change {after['auroc'] - before['auroc']:+.4f} (goal: a drop of at most 0.01); adapt took "
          f"{seconds:.1f} s (reading, scoring and cross-fitting {len(picked)} images, writing the delta)")
    shutil.rmtree(frames, ignore_errors=True)


if __name__ == "__main__":
    main()
