"""Detection quality with the defaults: every pretext task after the same CPU pretraining budget, with its
best detector, beside a randomly initialised backbone and raw pixels, on the real data sets.

Protocol, per data set (labels are read only to pick the normal class and to score the test split):
* pretrain with ``edgessl pretrain``'s defaults for ``--time-budget`` seconds per method (the
  learning rate's cosine ends with the budget);
* fit each detector (gaussian, knn, patch) with ``edgessl fit``'s defaults (cross-fitted
  threshold at the default target) on the normal training images; keep the one with the best
  test image AUROC and report it beside the row (chosen on the test split, so optimistic); the
  last column gives every detector's image AUROC, which is what a fixed ``--detector`` gets;
* columns: image AUROC, pixel AUROC (where the data has masks), the false-positive rate at the
  threshold on the test normals (with the target the threshold achieved), CPU seconds (process
  time of pretraining + fitting + scoring the best detector);
* random init: the default backbone untrained; raw pixels: the knn detector on normalised pixel
  vectors at the default image size, thresholded by the same cross-fitting.

Data sets: ELPV (``good`` vs ``defect``, ``uncertain`` left out), PneumoniaMNIST (normal 0),
BreastMNIST (normal 1), CIFAR-10 one-vs-rest on a stratified subset (``--cifar-per-class`` train
and a tenth of it test images per class; pretrained once on the subset, the detector fitted per
normal class; the mean over ``--cifar-classes``).

    python benchmarks/bench_quality.py                      # 600 s per method and data set
    python benchmarks/bench_quality.py --datasets elpv --time-budget 60 --methods cutpaste perlin simclr
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from edgessl.edge_runtime.data.anomaly_report import anomaly_report
from edgessl.edge_runtime.data.datasets import drop_labels, open_dataset, resolve_label
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.edge_runtime.thresholds import Threshold, fit_threshold
from edgessl.train.backbones import BackboneConfig, build_backbone
from edgessl.train.checkpoint import load_model, save_model
from edgessl.train.data import channel_stats, infer_channels, load_uint8, normalise
from edgessl.train.detector_metrics import detector_metrics
from edgessl.train.fit import FitConfig, crossfit_scores, fit_detector, fit_run, normal_images
from edgessl.train.features import bank_features
from edgessl.train.run_records import detector_dir
from edgessl.train.methods import METHODS
from edgessl.train.pretrain import PretrainConfig, pretrain

DATA = Path(os.environ.get("EDGESSL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
DETECTORS = ("gaussian", "knn", "patch")


@dataclass
class Task:
    name: str
    source: str
    normal_labels: list[str]
    ignore: list[str] = field(default_factory=list)


def tasks(names: list[str], root: Path, per_class: int) -> list[Task]:
    known = {
        "elpv": lambda: Task("ELPV", str(DATA / "elpv" / "solar_cell"), ["good"], ["uncertain"]),
        "pneumonia": lambda: Task("PneumoniaMNIST", str(DATA / "pneumoniamnist" / "pneumoniamnist.npz"), ["0"]),
        "breast": lambda: Task("BreastMNIST", str(DATA / "breastmnist" / "breastmnist.npz"), ["1"]),
        "cifar10": lambda: Task("CIFAR-10 one-vs-rest", cifar_subset(root / "cifar10.npz", per_class),
                                [str(c) for c in range(10)]),
    }
    return [known[n]() for n in names]


def cifar_subset(out: Path, per_class: int, seed: int = 0) -> str:
    """A stratified CIFAR-10 subset as a MedMNIST-style .npz (``per_class`` train, a tenth test)."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", per_class), ("test", max(10, per_class // 10))):
        ds = open_dataset(str(DATA / "cifar10"), split)
        idx = np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), n, replace=False)
                              for c in range(len(ds.class_names))])
        arrays[f"{split}_images"] = np.stack([ds.image(int(i)) for i in idx])
        arrays[f"{split}_labels"] = ds.labels[idx].reshape(-1, 1)
    np.savez(out, **arrays)
    return str(out)


def random_init_run(source: str, out: Path) -> Path:
    """The default backbone, untrained, with the data's normalisation (what pretrain would start from)."""
    d = PretrainConfig()
    ds = open_dataset(source, "train")
    channels = infer_channels(ds)
    mean, std = channel_stats(load_uint8(ds, PreprocessSpec(d.image_size, channels, (0.5,) * channels,
                                                            (0.25,) * channels)))
    torch.manual_seed(d.seed)
    save_model(out, build_backbone(BackboneConfig(d.backbone, channels, d.image_size)),
               PreprocessSpec(d.image_size, channels, mean, std), {"method": "random-init"})
    return out


def best_detector(run: Path, task: Task, normal: str) -> dict:
    """Fit every detector with the defaults; the test metrics of the best by image AUROC, with every
    detector's image AUROC under ``by_detector``."""
    backbone, spec, _ = load_model(run)
    test = drop_labels(open_dataset(task.source, "test"), task.ignore)
    normal_index = resolve_label(test, normal)
    best: dict = {}
    by_detector: dict[str, float] = {}
    for kind in DETECTORS:
        start = time.process_time()
        fit_run(FitConfig(run=str(run), data=task.source, normal_label=normal, detector=kind, device="cpu"))
        m = detector_metrics(run, backbone, spec, test, normal_index, "cpu", 256)
        m["cpu_seconds"] = time.process_time() - start
        m["test_normal_fpr"] = m["fpr_at_threshold"]
        m["achieved_target"] = Threshold.load(detector_dir(run) / "threshold.json").target_fpr
        by_detector[kind] = m["auroc"]
        if not best or m["auroc"] > best["auroc"]:
            best = m
    return {**best, "by_detector": by_detector}


def raw_pixels(task: Task, normal: str) -> dict:
    start = time.process_time()
    d = PretrainConfig()
    train, _ = normal_images(open_dataset(task.source, "train"), normal)
    val, _ = normal_images(open_dataset(task.source, "val"), normal)
    test = drop_labels(open_dataset(task.source, "test"), task.ignore)
    channels = infer_channels(train)
    geometry = PreprocessSpec(d.image_size, channels, (0.0,) * channels, (1.0,) * channels)
    x = torch.cat([load_uint8(train, geometry), load_uint8(val, geometry)])
    mean, std = channel_stats(x)
    spec = PreprocessSpec(d.image_size, channels, mean, std)
    feats = {"embedding": normalise(x, spec).flatten(1).numpy()}
    cfg = FitConfig(detector="knn")
    threshold = fit_threshold(crossfit_scores(cfg, feats), cfg.target_fpr, cfg.confidence, strict=False)
    detector = fit_detector("knn", bank_features(feats))
    raw = detector.score({"embedding": normalise(load_uint8(test, geometry), spec).flatten(1).numpy()}).raw_scores
    m = anomaly_report(test.labels != resolve_label(test, normal), raw, threshold)
    return {**m, "detector": "knn", "test_normal_fpr": m["fpr_at_threshold"], "achieved_target": threshold.target_fpr,
            "cpu_seconds": time.process_time() - start}


def mean_rows(rows: list[dict]) -> dict:
    keys = ("auroc", "pixel_auroc", "test_normal_fpr", "achieved_target", "cpu_seconds")
    out = {k: float(np.mean([r[k] for r in rows])) for k in keys if all(k in r for r in rows)}
    kinds = sorted({r["detector"] for r in rows})
    if all("by_detector" in r for r in rows):
        out["by_detector"] = {k: float(np.mean([r["by_detector"][k] for r in rows])) for k in rows[0]["by_detector"]}
    return {**out, "detector": "/".join(kinds)}


def measure(task: Task, methods: list[str], budget: float, root: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    pretrain_cpu: dict[str, float] = {}
    runs: dict[str, Path] = {"random init": random_init_run(task.source, root / task.name / "random")}
    pretrain_cpu["random init"] = 0.0
    for m in methods:
        start = time.process_time()
        pretrain(PretrainConfig(data=task.source, method=m, time_budget=budget, device="cpu",
                                out=str(root / task.name / m)))
        runs[m], pretrain_cpu[m] = root / task.name / m, time.process_time() - start
    for name, run in runs.items():
        r = mean_rows([best_detector(run, task, n) for n in task.normal_labels])
        r["cpu_seconds"] += pretrain_cpu[name]
        rows[name] = r
        print(f"{task.name} {name}: {r}", flush=True)
    rows["raw pixels"] = mean_rows([raw_pixels(task, n) for n in task.normal_labels])
    print(f"{task.name} raw pixels: {rows['raw pixels']}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=["elpv", "pneumonia", "breast", "cifar10"],
                    choices=["elpv", "pneumonia", "breast", "cifar10"])
    ap.add_argument("--time-budget", type=float, default=600.0, help="pretraining seconds per method and data set")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--cifar-per-class", type=int, default=500)
    ap.add_argument("--cifar-classes", type=int, default=10, help="normal classes averaged (the first N)")
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_quality_"))
    root.mkdir(parents=True, exist_ok=True)
    table: dict[str, dict[str, dict]] = {}
    for task in tasks(args.datasets, root, args.cifar_per_class):
        if not Path(task.source).exists():
            raise SystemExit(f"{task.source} is not here (real data lives in ../shared/data or $EDGESSL_SHARED_DATA)")
        if task.name.startswith("CIFAR"):
            task.normal_labels = task.normal_labels[: args.cifar_classes]
        table[task.name] = measure(task, args.methods, args.time_budget, root)

    d = PretrainConfig()
    print(f"\nDetection quality with the defaults ({d.backbone}, {d.image_size} px, batch {d.batch_size}; fit: "
          f"cross-fitted threshold at {FitConfig().target_fpr:g} FPR, {FitConfig().confidence:g} confidence), "
          f"{args.time_budget:.0f} s pretraining per method, {torch.get_num_threads()} threads")
    print("| data | features | best detector | image AUROC | pixel AUROC | FPR on test normals (target) | CPU s "
          f"| AUROC {' / '.join(DETECTORS)} |")
    print("|---|---|---|---|---|---|---|---|")
    for data, rows in table.items():
        for name, r in rows.items():
            pix = f"{r['pixel_auroc']:.3f}" if "pixel_auroc" in r else "-"
            each = " / ".join(f"{r['by_detector'][k]:.3f}" for k in DETECTORS) if "by_detector" in r else "-"
            print(f"| {data} | {name} | {r['detector']} | {r['auroc']:.3f} | {pix} | "
                  f"{r['test_normal_fpr']:.3f} ({r['achieved_target']:.3f}) | {r['cpu_seconds']:.0f} | {each} |")
        learned = {k: v["auroc"] for k, v in rows.items() if k in METHODS}
        if learned:
            top = max(learned, key=learned.get)
            print(f"| {data} | best task vs random init | {top} | "
                  f"{learned[top] - rows['random init']['auroc']:+.3f} | | | | |")


if __name__ == "__main__":
    main()
