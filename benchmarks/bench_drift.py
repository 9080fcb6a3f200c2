"""The drift watch on real images: quiet on in-distribution frames, an alarm on a changed camera.

One bundle (``timing_bundle``: resnet18 at 32 px, ``fit``'s default detector on ELPV's training
normals by default) scores the test normals as they are and changed (1.6x brighter, blurred,
noisy); frames are then drawn from those scores as a camera stream would deliver them:

* **false alarms**: ``--frames`` in-distribution frames (the test normals, drawn with replacement),
  the alarms raised per 1,000 frames;
* **120 test normals** (as ``edgessl run`` would score a folder of them), in ``--repeats`` random
  draws: how many draws alarm;
* **detection delay**: ``--warmup`` in-distribution frames, then changed ones; the frames after
  the change until the first alarm (median over ``--repeats`` streams).

    python benchmarks/bench_drift.py [--data ../shared/data/elpv/solar_cell] [--normal-label good]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import cv2
import numpy as np

from edgessl.edge_runtime.data.datasets import open_dataset, resolve_label
from edgessl.edge_runtime.drift import DriftConfig, DriftWatch
from edgessl.edge_runtime.pipeline import Pipeline
from timing_bundle import timing_bundle

DATA = Path(os.environ.get("EDGESSL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
CHANGES = {
    "1.6x brighter": lambda img: np.clip(img.astype(np.float32) * 1.6, 0, 255).astype(np.uint8),
    "blurred (sigma 1.5 px of 64)": lambda img: cv2.GaussianBlur(img, (0, 0), 1.5 * img.shape[0] / 64),
    "noisy (sigma 12 grey levels)": lambda img: np.clip(
        img.astype(np.float32) + np.random.default_rng(img.size).normal(0, 12, img.shape), 0, 255).astype(np.uint8),
}


def stream_alarms(scores: np.ndarray, threshold, config: DriftConfig) -> list[int]:
    """The frame indices at which the watch's test alarms."""
    watch = DriftWatch(threshold, config)
    before = 0
    out = []
    for i, s in enumerate(scores):
        if watch.add(s).alarms > before:
            out.append(i)
            before = watch.report().alarms
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "elpv" / "solar_cell"))
    ap.add_argument("--normal-label", default="good")
    ap.add_argument("--work", default="runs/bench_drift")
    ap.add_argument("--frames", type=int, default=10_000)
    ap.add_argument("--warmup", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    bundle, _ = timing_bundle(Path(args.work), 32, 1, data=args.data, normal_label=args.normal_label, int8=False)
    pipe = Pipeline.load(bundle, backend="ort-cpu")
    test = open_dataset(args.data, "test")
    normals = [test.image(int(i)) for i in np.flatnonzero(test.labels == resolve_label(test, args.normal_label))]
    score = lambda imgs: np.array([r.raw_score for r in pipe.score_batch(imgs)])  # noqa: E731
    base = score(normals)
    changed = {name: score([f(img) for img in normals]) for name, f in CHANGES.items()}
    config, rng = DriftConfig(), np.random.default_rng(0)
    th = pipe.threshold_record
    false = stream_alarms(rng.choice(base, args.frames), th, config)
    draws = [len(stream_alarms(rng.permutation(base)[:120], th, config)) > 0 for _ in range(args.repeats)]
    print(f"\nDrift watch (window {config.window}, a test every {config.every} frames, alpha {config.alpha}, "
          f"effect floor {config.min_effect}) on {args.data}: {len(normals)} test normals, {pipe.detector.kind} detector")
    print("| stream | frames | alarms | per 1,000 frames |\n|---|---|---|---|")
    print(f"| in-distribution (test normals, drawn with replacement) | {args.frames} | {len(false)} | "
          f"{1000 * len(false) / args.frames:.2f} |")
    print(f"| 120 test normals in random order, {args.repeats} draws | 120 | {sum(draws)} of {args.repeats} draws "
          "alarmed | - |")
    print(f"\n| change | mean raw score (normal {base.mean():.3f}) | detection delay, frames (median, "
          f"min-max over {args.repeats} streams) |\n|---|---|---|")
    for name, scores in changed.items():
        delays = []
        for _ in range(args.repeats):
            stream = np.r_[rng.choice(base, args.warmup), rng.choice(scores, 10 * config.window)]
            after = [a - args.warmup for a in stream_alarms(stream, th, config) if a >= args.warmup]
            delays.append(after[0] if after else np.inf)
        d = np.asarray(delays)
        shown = f"{np.median(d):.0f} ({d.min():.0f}-{d.max():.0f})" if np.isfinite(d).all() else \
            f"{np.median(d):.0f}; no alarm in {int((~np.isfinite(d)).sum())} of {args.repeats}"
        print(f"| {name} | {scores.mean():.3f} | {shown} |")


if __name__ == "__main__":
    main()
