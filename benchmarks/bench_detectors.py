"""Image AUROC of every anomaly detector on four datasets, on a self-supervised backbone, a randomly
initialised one, and raw pixels; with the CPU time each took. Prints one Markdown table.

    python benchmarks/bench_detectors.py [--pretrain-budget 60] [--method simclr] [--runs name=RUN_DIR ...]

Protocol (the same for every row):
* images at 32 px through the runtime preprocessing; grey data stays grey;
* the self-supervised backbone (resnet18) is pretrained here for ``--pretrain-budget`` seconds
  per dataset on that dataset's unlabelled train split (anomalies included: labels are not used),
  unless ``--runs DATASET=RUN_DIR`` gives a run; ``random-init`` is the same network untrained;
* detectors are fitted on the normal train images only (at most ``--max-train``), scored with the
  runtime's numpy code (``edge_runtime.detectors``) on the test split (at most ``--max-test``,
  a stratified sample);
* raw-pixel kNN: the 5-NN mean cosine distance on the pixels at 32 px, in [0, 1];
* CPU time: process CPU seconds for feature extraction + fitting + scoring of that cell;
* CIFAR-10: one backbone on a stratified subset (``--cifar-train`` per class, ``--cifar-test`` per
  class); each class in turn is normal, the others anomalous; the mean AUROC over 10 classes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgessl.edge_runtime.data.datasets import ImageDataset, class_indices, drop_labels, open_dataset, resolve_label
from edgessl.edge_runtime.data.metrics import auroc
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.train.backbones import BackboneConfig, build_backbone
from edgessl.train.checkpoint import load_model, read_model_meta, save_model
from edgessl.train.data import channel_stats, infer_channels, load_uint8
from edgessl.train.feature_model import FeatureModel
from edgessl.train.fit import collect_features, fit_detector
from edgessl.train.knn import knn_distance
from edgessl.train.pretrain import PretrainConfig, pretrain

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
IMAGE_SIZE = 32
DETECTORS = ("gaussian", "knn", "patch")


@dataclass
class Task:
    name: str
    source: str
    normal: list[str]  # one class per AUROC; the mean is reported
    ignore: tuple[str, ...] = ()


def _stratified(ds: ImageDataset, per_class: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    idx = [rng.permutation(np.flatnonzero(ds.labels == c))[:per_class] for c in np.unique(ds.labels)]
    return np.sort(np.concatenate(idx))


def cifar_subset(out: Path, train_per_class: int, test_per_class: int) -> str:
    """A stratified CIFAR-10 subset written as a MedMNIST-style .npz (fast to re-read)."""
    path = out / "cifar10_subset.npz"
    arrays = {}
    for split, n in (("train", train_per_class), ("test", test_per_class)):
        ds = open_dataset(str(DATA / "cifar10"), split)
        idx = _stratified(ds, n)
        arrays[f"{split}_images"] = np.stack([ds.image(int(i)) for i in idx])
        arrays[f"{split}_labels"] = ds.labels[idx]
    np.savez(path, **arrays)
    return str(path)


def data_spec(source: str) -> PreprocessSpec:
    """32 px, the data's channels, mean and std (as ``edgessl pretrain`` sets them)."""
    ds = open_dataset(source, "train")
    channels = infer_channels(ds)
    geometry = PreprocessSpec(IMAGE_SIZE, channels, (0.5,) * channels, (0.25,) * channels)
    mean, std = channel_stats(load_uint8(ds.subset(np.arange(min(len(ds), 2000))), geometry))
    return PreprocessSpec(IMAGE_SIZE, channels, mean, std)


def random_run(source: str, out: Path) -> Path:
    spec = data_spec(source)
    torch.manual_seed(0)
    save_model(out, build_backbone(BackboneConfig("resnet18", spec.channels, IMAGE_SIZE)), spec,
               {"method": "random-init"})
    return out


def cpu() -> float:
    return time.process_time()


def _limit(ds: ImageDataset, n: int) -> ImageDataset:
    return ds.subset(_stratified(ds, n // max(1, len(np.unique(ds.labels))) + 1)[:n]) if n and len(ds) > n else ds


def evaluate_backbone(run: Path, task: Task, args) -> dict[str, tuple[float, float]]:
    """(mean AUROC, CPU s) of each detector on this run's features."""
    backbone, spec, _ = load_model(run)
    model = FeatureModel(backbone, with_patches=True)
    train = open_dataset(task.source, "train")
    test = drop_labels(open_dataset(task.source, "test"), list(task.ignore))
    test = _limit(test, args.max_test)
    t0 = cpu()
    test_out = collect_features(model, test, spec, "cpu", 128, patch_pool=10**9)  # every patch, (N, h*w, C)
    c, h, w = patch_shape(model, spec)
    test_out["patches"] = test_out["patches"].reshape(len(test), h, w, c).transpose(0, 3, 1, 2)
    test_cpu = cpu() - t0
    results: dict[str, list[tuple[float, float]]] = {d: [] for d in DETECTORS}
    for normal_name in task.normal:
        normal = resolve_label(train, normal_name)
        normals = train.subset(class_indices(train, normal))
        normals = normals.subset(np.arange(min(len(normals), args.max_train)))
        t0 = cpu()
        feats = collect_features(model, normals, spec, "cpu", 128, patch_pool=args.patch_pool)
        feat_cpu = cpu() - t0 + test_cpu / len(task.normal)
        y = test.labels != normal
        for kind in DETECTORS:
            t0 = cpu()
            det = fit_detector(kind, feats, coreset=args.coreset if kind == "patch" else 0)
            raw = np.concatenate([det.score({k: v[i:i + 64] for k, v in test_out.items()}).raw_scores
                                  for i in range(0, len(test), 64)])
            results[kind].append((auroc(y, raw), feat_cpu + cpu() - t0))
    return {k: (float(np.mean([a for a, _ in v])), float(np.sum([c for _, c in v]))) for k, v in results.items()}


def patch_shape(model: FeatureModel, spec: PreprocessSpec) -> tuple[int, int, int]:
    """(C, h, w) of the ``patches`` output."""
    with torch.no_grad():
        p = model(torch.zeros(1, spec.channels, spec.image_size, spec.image_size))[1]
    return p.shape[1], p.shape[2], p.shape[3]


def raw_pixel_knn(task: Task, args) -> tuple[float, float]:
    t0 = cpu()
    train = open_dataset(task.source, "train")
    spec = data_spec(task.source)
    test = _limit(drop_labels(open_dataset(task.source, "test"), list(task.ignore)), args.max_test)
    test_x = load_uint8(test, spec).flatten(1).float().numpy() / 255.0
    aurocs = []
    for normal_name in task.normal:
        normal = resolve_label(train, normal_name)
        normals = train.subset(class_indices(train, normal))
        normals = normals.subset(np.arange(min(len(normals), args.max_train)))
        bank = load_uint8(normals, spec).flatten(1).float().numpy() / 255.0
        aurocs.append(auroc(test.labels != normal, knn_distance(bank, test_x, k=5)))
    return float(np.mean(aurocs)), cpu() - t0


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pretrain-budget", type=float, default=60.0, help="wall seconds of SSL per dataset")
    ap.add_argument("--method", default="simclr")
    ap.add_argument("--runs", nargs="*", default=[], metavar="DATASET=RUN_DIR", help="use these runs instead")
    ap.add_argument("--max-train", type=int, default=600, help="normal training images per detector")
    ap.add_argument("--max-test", type=int, default=600, help="test images per dataset (stratified)")
    ap.add_argument("--cifar-train", type=int, default=200, help="CIFAR-10 training images per class")
    ap.add_argument("--cifar-test", type=int, default=50, help="CIFAR-10 test images per class")
    ap.add_argument("--coreset", type=int, default=1024, help="patch memory bank size")
    ap.add_argument("--patch-pool", type=int, default=16384, help="patch features the coreset picks from")
    ap.add_argument("--datasets", nargs="*", default=None, help="subset of the dataset names")
    return ap.parse_args()


def run(args: argparse.Namespace, tmp: Path) -> int:
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    given = dict(r.split("=", 1) for r in args.runs)
    tasks = [
        Task("PneumoniaMNIST", str(DATA / "pneumoniamnist" / "pneumoniamnist.npz"), ["0"]),
        Task("BreastMNIST", str(DATA / "breastmnist" / "breastmnist.npz"), ["1"]),
        Task("ELPV", str(DATA / "elpv" / "solar_cell"), ["good"], ("uncertain",)),
        Task("CIFAR-10", "", [str(c) for c in range(10)]),
    ]
    tasks = [t for t in tasks if args.datasets is None or t.name in args.datasets]
    rows: dict[str, dict[str, str]] = {}
    notes = []
    for task in tasks:
        if task.name == "CIFAR-10":
            task.source = cifar_subset(tmp, args.cifar_train, args.cifar_test)
        print(f"== {task.name}", file=sys.stderr, flush=True)
        ssl = Path(given[task.name]) if task.name in given else None
        if ssl is None:
            t0 = cpu()
            ssl = tmp / f"ssl_{task.name}"
            pretrain(PretrainConfig(data=task.source, method=args.method, image_size=IMAGE_SIZE, batch_size=64,
                                    time_budget=args.pretrain_budget, epochs=100, device="cpu", out=str(ssl)))
            notes.append(f"{task.name}: {args.method} pretraining {args.pretrain_budget:.0f} s wall, "
                         f"{cpu() - t0:.0f} CPU s")
        method = read_model_meta(ssl).get("method") or args.method  # a given run says what trained it
        for label, run in ((f"{method} (SSL)", ssl), ("random-init", random_run(task.source, tmp / f"rand_{task.name}"))):
            for kind, (a, c) in evaluate_backbone(run, task, args).items():
                rows.setdefault(f"{label} | {kind}", {})[task.name] = f"{a:.3f} ({c:.0f} s)"
        a, c = raw_pixel_knn(task, args)
        rows.setdefault("raw pixels | knn", {})[task.name] = f"{a:.3f} ({c:.0f} s)"
    names = [t.name for t in tasks]
    print("| features | detector | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for key, cells in rows.items():
        print(f"| {key} | " + " | ".join(cells.get(n, "-") for n in names) + " |")
    print()
    for n in notes:
        print(f"- {n}")
    return 0


def main() -> int:
    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_detectors_") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
