"""A few labels: self-supervised features + 1% / 10% labels, against the same network from scratch
on the same labels and against logistic regression on raw pixels.

Protocol, per data set and seed s (the seed draws the pretraining, the labelled set and the
fine-tuning):
* ``pretrain`` with its defaults (the default task) and ``--max-steps S`` on the train split's
  images, labels unread; the untrained backbone (random init, seed s) is the from-scratch start;
* for each label fraction F: ``finetune``'s stratified labelled set (seed s), then
  - ``ssl linear``: ``finetune --linear`` on the pretrained run (frozen backbone);
  - ``ssl full``: ``finetune`` (backbone and head) on the pretrained run;
  - ``scratch full``: ``finetune`` on the untrained backbone, same labels, same recipe;
  - ``raw pixels``: logistic regression on the normalised pixel vectors at the run's image size;
  - the semi-supervised candidate (issue 22, item 4), on the pretrained run's embeddings of the
    whole train split: ``ssl logreg`` (logistic regression on the labelled embeddings) beside
    ``ssl logreg + pseudo`` (the same on the labelled images plus pseudo-labels that label
    spreading over the embeddings' 10-nearest-neighbour graph gives the unlabelled rest);
* on the test split: accuracy, balanced accuracy and AUROC (two classes: the positive class's
  probability; more: the mean one-vs-rest AUROC); the CPU seconds each took (``process_time``,
  every thread), pretraining's apart.
* INT8: seed 0's ``ssl full`` model at the largest fraction is exported and calibrated for the CPU
  (``calibrate --target cpu``); the gate's accuracy at fp32 and INT8 on its held-out test images.

Data sets (``../shared/data`` or ``$EDGESSL_SHARED_DATA``): PneumoniaMNIST, BreastMNIST, a
stratified CIFAR-10 subset (500 train and 100 test images a class) and ELPV good vs defect (every
64 px cell, ``uncertain`` left out, split 70/30 per class, seeded).

    python benchmarks/bench_fewlabel.py                                   # every set, 650 steps, 3 seeds
    python benchmarks/bench_fewlabel.py --datasets breast --seeds 0 --steps 250 --json rows.json
    python benchmarks/bench_fewlabel.py --table a.json b.json             # one table from saved rows
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler
from sklearn.semi_supervised import LabelSpreading

from edgessl.calibration.calibrate import calibrate_bundle
from edgessl.calibration.config import CalibrateConfig
from edgessl.calibration.gate import GateFailed
from edgessl.edge_runtime.data.classification_report import classification_report
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.export.bundle_writer import export_bundle
from edgessl.export.config import ExportConfig
from edgessl.train.checkpoint import load_model
from edgessl.train.config import PRETRAIN_STEPS, FinetuneConfig, PretrainConfig
from edgessl.train.data import load_uint8, normalise
from edgessl.train.features import embed_tensor
from edgessl.train.finetune import finetune, labelled_subset, load_head
from edgessl.train.pretrain import pretrain

from bench_quality import DATA, LEGACY_BATCH, cifar_subset, cpu_flags, random_init, spread

FRACTIONS = (0.01, 0.1)
ARMS = ("ssl linear", "ssl full", "scratch full", "raw pixels", "ssl logreg", "ssl logreg + pseudo")
METRICS = ("accuracy", "balanced_accuracy", "auroc")


@dataclass
class Task:
    name: str
    source: str
    positive: int | None  # the class whose probability the AUROC ranks; None: mean one-vs-rest


def elpv_classes(out: Path, seed: int = 0) -> str:
    """ELPV good (0) vs defect (1), every 64 px cell of ``../shared/data``'s copy, 70/30 per class."""
    if out.exists():
        return str(out)
    root = DATA / "elpv" / "solar_cell"
    images = {0: [], 1: []}
    for split in ("train", "test"):
        ds = open_dataset(str(root), split)
        for i in range(len(ds)):
            name = ds.class_names[ds.labels[i]]
            if name in ("good", "defect"):
                images[int(name == "defect")].append(ds.image(i))
    rng, arrays = np.random.default_rng(seed), {"train_images": [], "train_labels": [], "test_images": [],
                                                 "test_labels": []}
    for c, imgs in images.items():
        order = rng.permutation(len(imgs))
        cut = int(0.7 * len(imgs))
        for split, idx in (("train", order[:cut]), ("test", order[cut:])):
            arrays[f"{split}_images"] += [imgs[i] for i in idx]
            arrays[f"{split}_labels"] += [c] * len(idx)
    np.savez(out, **{k: np.stack(v) if k.endswith("images") else np.asarray(v).reshape(-1, 1)
                     for k, v in arrays.items()})
    return str(out)


def task(name: str, root: Path) -> Task:
    if name == "pneumonia":
        return Task("PneumoniaMNIST", str(DATA / "pneumoniamnist" / "pneumoniamnist.npz"), 1)
    if name == "breast":
        return Task("BreastMNIST", str(DATA / "breastmnist" / "breastmnist.npz"), 0)
    if name == "cifar10":
        return Task("CIFAR-10 subset", cifar_subset(root / "cifar10.npz"), None)
    if name == "elpv":
        return Task("ELPV good vs defect", elpv_classes(root / "elpv_classes.npz"), 1)
    raise SystemExit(f"unknown data set {name}")


def figures(y: np.ndarray, prob: np.ndarray, positive: int | None) -> dict:
    """Accuracy, balanced accuracy (``classification_report``, as ``evaluate --bundle`` reports them) and
    AUROC of class probabilities ``prob`` (N, K) against ``y``: the positive class's, or the mean
    one-vs-rest where there is none."""
    classes = [str(k) for k in range(prob.shape[1])]
    report = classification_report(y, prob, classes, None if positive is None else classes[positive])
    score = report["positive_auroc"] if positive is not None else roc_auc_score(y, prob, multi_class="ovr")
    return {"accuracy": report["accuracy"], "balanced_accuracy": report["balanced_accuracy"], "auroc": float(score)}


def run_figures(run: Path, t: Task) -> dict:
    """The fine-tuned run's figures on the test split (its backbone, its head)."""
    backbone, spec, _ = load_model(run)
    head, _ = load_head(run)
    test = open_dataset(t.source, "test")
    emb = torch.from_numpy(embed_tensor(backbone, load_uint8(test, spec), spec))
    with torch.no_grad():
        prob = torch.softmax(head(emb), 1).numpy()
    return figures(test.labels, prob, t.positive)


def logreg(x: np.ndarray, y: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Class probabilities of standardised ``x_test`` from an L2 logistic regression on ``x``, ``y``."""
    scale = StandardScaler().fit(x)
    model = LogisticRegression(max_iter=2000, C=0.1).fit(scale.transform(x), y)
    return model.predict_proba(scale.transform(x_test))


def pseudo_labels(emb: np.ndarray, y: np.ndarray, labelled: np.ndarray) -> np.ndarray:
    """Every train image's class by label spreading from the labelled ones over a 10-NN graph."""
    seeds = np.full(len(emb), -1)
    seeds[labelled] = y[labelled]
    spread_model = LabelSpreading(kernel="knn", n_neighbors=10, alpha=0.2, max_iter=100)
    return spread_model.fit(StandardScaler().fit_transform(emb), seeds).transduction_


def timed(fn) -> tuple[dict, float]:
    start = time.process_time()
    out = fn()
    return out, time.process_time() - start


def embedding_arms(pre: Path, t: Task, labelled: np.ndarray) -> dict:
    """The raw-pixel and embedding logistic regressions (with and without pseudo-labels)."""
    backbone, spec, _ = load_model(pre)
    train, test = open_dataset(t.source, "train"), open_dataset(t.source, "test")
    x_train, x_test = load_uint8(train, spec), load_uint8(test, spec)
    y, y_test = train.labels, test.labels
    pixels = lambda x: normalise(x, spec).flatten(1).numpy()
    rows = {}
    rows["raw pixels"] = timed(lambda: figures(y_test, logreg(pixels(x_train)[labelled], y[labelled],
                                                              pixels(x_test)), t.positive))
    start = time.process_time()
    emb, emb_test = embed_tensor(backbone, x_train, spec), embed_tensor(backbone, x_test, spec)
    embed_s = time.process_time() - start
    out, s = timed(lambda: figures(y_test, logreg(emb[labelled], y[labelled], emb_test), t.positive))
    rows["ssl logreg"] = (out, s + embed_s)
    out, s = timed(lambda: figures(y_test, logreg(emb, pseudo_labels(emb, y, labelled), emb_test), t.positive))
    rows["ssl logreg + pseudo"] = (out, s + embed_s)
    return rows


def finetune_arm(start: Path, out: Path, t: Task, fraction: float, seed: int, linear: bool) -> tuple[dict, float]:
    def go() -> dict:
        finetune(FinetuneConfig(run=str(start), data=t.source, label_fraction=fraction, linear=linear, seed=seed,
                                out=str(out), device="cpu"))
        return run_figures(out, t)
    return timed(go)


def int8_figures(run: Path, t: Task, root: Path) -> dict:
    """fp32 and INT8 (CPU target) accuracy of the exported classifier on the gate's held-out test images."""
    bundle = root / f"{run.name}-bundle"
    export_bundle(ExportConfig(run=str(run), out=str(bundle), force=True,
                            positive_class=None if t.positive is None else str(t.positive)))
    try:
        report = calibrate_bundle(CalibrateConfig(bundle=str(bundle), target="cpu"))
    except GateFailed as failed:
        report = failed.report
    (target,) = report["targets"].values()
    m = target["metrics"]
    return {"accuracy_fp32": m["accuracy_fp32"], "accuracy_int8": m["accuracy_int8"],
            "accuracy_change": m["accuracy_change"], "passed": target["passed"], "float_nodes": target["float_nodes"]}


def one_seed(t: Task, steps: int, batch: int, seed: int, root: Path, fractions: tuple[float, ...]) -> dict:
    """Every arm of one data set and seed, pretrained ``steps`` steps of ``batch`` images."""
    pre, scratch = root / f"{t.name}-pre-{steps}x{batch}-{seed}", root / f"{t.name}-scratch-{seed}"
    start = time.process_time()
    if not (pre / "model.json").exists():
        pretrain(PretrainConfig(data=t.source, max_steps=steps, batch_size=batch, seed=seed, device="cpu",
                                out=str(pre)))
    pre_s = time.process_time() - start
    if not (scratch / "model.json").exists():
        random_init(t.source, scratch, seed)
    labels = open_dataset(t.source, "train").labels
    out = {"dataset": t.name, "seed": seed, "steps": steps, "batch_size": batch, "pretrain_cpu_s": pre_s, "arms": {}}
    for fraction in fractions:
        labelled = labelled_subset(labels, fraction, seed)
        arms = embedding_arms(pre, t, labelled)
        for name, start_run, linear in (("ssl linear", pre, True), ("ssl full", pre, False),
                                        ("scratch full", scratch, False)):
            arms[name] = finetune_arm(start_run, root / f"{t.name}-{name.replace(' ', '_')}-{fraction}-{seed}", t,
                                      fraction, seed, linear)
        out["arms"][str(fraction)] = {k: {**v[0], "cpu_s": v[1], "labels": int(len(labelled))}
                                      for k, v in arms.items()}
    if seed == 0:
        out["int8"] = int8_figures(root / f"{t.name}-ssl_full-{max(fractions)}-{seed}", t, root)
    return out


def print_table(rows: list[dict]) -> None:
    print(f"CPU: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in dict.fromkeys(r["dataset"] for r in rows):
        mine = [r for r in rows if r["dataset"] == name]
        seeds = sorted({r["seed"] for r in mine})
        pre = np.mean([r["pretrain_cpu_s"] for r in mine])
        batch = mine[0].get("batch_size", LEGACY_BATCH)
        print(f"\n{name}: pretraining {mine[0]['steps']} steps of {batch} ({pre:.0f} CPU s), seeds {seeds}")
        print(f"| labels | arm | accuracy | balanced accuracy | AUROC | CPU s |")
        print("|---|---|---|---|---|---|")
        for fraction in mine[0]["arms"]:
            for arm in ARMS:
                cells = [r["arms"][fraction][arm] for r in mine]
                values = [spread([c[k] for c in cells]) for k in METRICS]
                print(f"| {float(fraction):.0%} ({cells[0]['labels']}) | {arm} | {' | '.join(values)} | "
                      f"{np.mean([c['cpu_s'] for c in cells]):.0f} |")
        for r in mine:
            if "int8" in r:
                q = r["int8"]
                print(f"INT8 (cpu), ssl full {float(max(mine[0]['arms'])):.0%}, seed {r['seed']}: accuracy fp32 "
                      f"{q['accuracy_fp32']:.3f}, int8 {q['accuracy_int8']:.3f} (change {q['accuracy_change']:+.3f}); "
                      f"gate {'passed' if q['passed'] else 'failed'}, {len(q['float_nodes'])} float layers")
        low, high = str(min(FRACTIONS)), str(max(FRACTIONS))
        if low in mine[0]["arms"] and high in mine[0]["arms"]:
            best1 = max(np.mean([r["arms"][low][a]["accuracy"] for r in mine]) for a in ("ssl linear", "ssl full"))
            scratch10 = np.mean([r["arms"][high]["scratch full"]["accuracy"] for r in mine])
            print(f"self-supervised + {min(FRACTIONS):.0%} (best of linear/full) {best1:.3f} vs scratch + "
                  f"{max(FRACTIONS):.0%} {scratch10:.3f}: ratio {best1 / scratch10:.3f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["pneumonia", "breast", "cifar10", "elpv"])
    p.add_argument("--steps", type=int, default=PRETRAIN_STEPS,
                   help="pretraining optimiser steps (the default: pretrain's own, the CPU seconds of 1,000 steps "
                        "of 32)")
    p.add_argument("--batch-size", type=int, default=PretrainConfig().batch_size,
                   help="pretraining images per step (docs/benchmarks.md's tables: 32, the default before 2026-12-04)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    p.add_argument("--work", help="folder for runs (kept, so a rerun reuses the pretraining); default a temp dir")
    p.add_argument("--json", help="append each row to this JSON list as it finishes")
    p.add_argument("--table", nargs="+", help="print one table from rows saved by --json, and exit")
    args = p.parse_args()
    if args.table:
        print_table([r for f in args.table for r in json.loads(Path(f).read_text())])
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.work or tmp)
        root.mkdir(parents=True, exist_ok=True)
        rows = []
        for seed in args.seeds:
            for name in args.datasets:
                rows.append(one_seed(task(name, root), args.steps, args.batch_size, seed, root, tuple(args.fractions)))
                if args.json:
                    Path(args.json).write_text(json.dumps(rows, indent=1))
        print_table(rows)


if __name__ == "__main__":
    main()
