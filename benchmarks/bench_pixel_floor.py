"""Would a raw-pixel part hold the floor, and does any label-free rule combine the parts better than
``fit``'s mean? Measured on runs ``bench_quality.py --out DIR`` kept.

The pixel part, for an image normalised as the network's input ``x`` (``C x s x s``):

    p_j(x) = x average-pooled to s/2^j x s/2^j, flattened, L2-normalised (j = 1, 2);   p(x) = [p_1, p_2] / sqrt(2)

so its cosine distance to each bank image is the mean of the two scales' cosine distances; the
score is the mean distance to the k = 5 nearest (the knn detector's k) under that joint distance.
Per run: every part's cross-fitted normal scores (``fit``'s folds and seed) and, each part fitted
on all normal images, its test scores; each score standardised, ``z_i = (raw_i - m_i) / s_i``
with the median ``m_i`` and the upper spread ``s_i`` (90th percentile minus median) of part i's
cross-fitted scores (``fit``'s rule). The rules, over ``fit``'s three parts and over those with the
pixel part as a fourth, each from the normal images alone:

* ``mean``: the mean of the z_i (``fit``'s combined detector, over the three parts);
* ``mean-iqr``, ``mean-p95``, ``mean-p99``: the mean over ``fit``'s parts with each part's scale
  instead the inter-quartile range (``fit``'s rule before 2026-12-05), or the 95th or 99th
  percentile minus the median;
* ``max``: the largest z_i;
* ``agreement``: weights w_i proportional to the mean Spearman correlation of part i's cross-fitted
  scores with the other parts' (clipped at 0): a part that ranks the normal images as no other
  part does counts less;
* ``min-variance``: ``w ~ S^-1 1`` for the covariance S of the cross-fitted z_i (the weights under
  which the normal images' combined scores vary least), negative ones set to 0 and the rest
  rescaled to sum 1.

**Regret** is the best single part's test AUROC minus the rule's; the last table is each rule's mean
and worst regret over every row printed, against ``fit``'s three parts (``bench_quality.py``'s
regret) and against the four. Labels only pick the normal
class and score the test split. Each run's part scores are kept beside it
(``part_scores-NORMAL.npz``) and reused until the run is trained again.

    python benchmarks/bench_quality.py --datasets mnist cifar10 --steps 1000 --seeds 0 --out runs
    python benchmarks/bench_pixel_floor.py --runs runs --datasets mnist cifar10

Every run of a data set in the ``--runs`` folders is a row (each step budget and seed, and random
init; ``--features trained`` or ``untrained`` keeps one kind).
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench_quality import TITLES, Task, cpu_flags, folder_prefix, run_dir, task
from edgessl.edge_runtime.data.datasets import drop_labels, open_dataset, resolve_label
from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.data.metrics import auroc
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.train import precision
from edgessl.train.checkpoint import load_model
from edgessl.train.config import FitConfig
from edgessl.train.data import load_images, normalise
from edgessl.train.detectors import fit_knn
from edgessl.train.detectors.combined import PARTS, standardisation
from edgessl.train.features import bank_features, collect_outputs, feature_model_for
from edgessl.train.fit import crossfit_scores, fit_detector, normal_images

ALL = (*PARTS, "pixels")
Rule = Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], np.ndarray]  # (held-out z, test z) -> scores


def pixel_features(ds: ImageDataset, spec: PreprocessSpec) -> np.ndarray:
    """``p(x)`` of every image of ``ds`` (the module docstring)."""
    x = normalise(load_images(ds, spec)[:], spec)  # a tensor, in memory or from the cache
    scales = [F.normalize(F.adaptive_avg_pool2d(x, spec.image_size // 2**j).flatten(1), dim=1) for j in (1, 2)]
    return (torch.cat(scales, 1) / 2**0.5).numpy()


def standardised(held_out: np.ndarray, test: np.ndarray) -> np.ndarray:
    median, scale = standardisation(held_out)
    return (test - median) / scale


def stacked(z: dict[str, np.ndarray], kinds: tuple[str, ...]) -> np.ndarray:
    """The scores of ``kinds``, one row each."""
    return np.stack([z[k] for k in kinds])


def mean_rule(kinds: tuple[str, ...]) -> Rule:
    """The mean of the standardised scores of ``kinds`` (``fit``'s rule for the combined detector)."""
    return lambda z_held, z: stacked(z, kinds).mean(0)


def max_rule(kinds: tuple[str, ...]) -> Rule:
    """The largest standardised score of ``kinds``."""
    return lambda z_held, z: stacked(z, kinds).max(0)


def weighted(w: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``sum_i w_i z_i`` with the weights' negative entries set to 0 and the rest rescaled to sum 1."""
    w = np.clip(w, 0, None)
    return np.tensordot(w / w.sum(), z, 1)


def agreement_rule(kinds: tuple[str, ...]) -> Rule:
    """Weights from the held-out normal scores alone: part i weighs the mean Spearman correlation of
    its held-out scores with the other parts' (clipped at 0), so a part that ranks the normal images
    as no other part does counts less."""
    def rule(z_held, z):
        c = np.corrcoef(np.argsort(np.argsort(stacked(z_held, kinds), 1), 1))
        return weighted((c.sum(1) - 1) / (len(kinds) - 1), stacked(z, kinds))
    return rule


def min_variance_rule(kinds: tuple[str, ...]) -> Rule:
    """The minimum-variance weights of the held-out normal scores, ``w ~ S^-1 1`` for their
    covariance ``S``, negative ones set to 0 and the rest rescaled to sum 1 (not the constrained
    optimum: a cheap stand-in for it)."""
    def rule(z_held, z):
        return weighted(np.linalg.solve(np.cov(stacked(z_held, kinds)), np.ones(len(kinds))), stacked(z, kinds))
    return rule


def rescaled_mean_rule(lo: float, hi: float) -> Rule:
    """The mean over ``fit``'s parts of each part's score standardised again, by the median and the
    ``hi``-th minus the ``lo``-th percentile of its held-out scores (a standardisation is affine, so
    this is the raw score standardised that way)."""
    def rule(z_held, z):
        rescaled = []
        for k in PARTS:
            median, a, b = np.percentile(z_held[k], [50, lo, hi])
            rescaled.append((z[k] - median) / (b - a))
        return np.mean(rescaled, 0)
    return rule


RULES = {f"{name}{suffix}": make(kinds) for suffix, kinds in (("", PARTS), ("+pixels", ALL))
         for name, make in (("mean", mean_rule), ("max", max_rule), ("agreement", agreement_rule),
                            ("min-variance", min_variance_rule))}
RULES.update({"mean-iqr": rescaled_mean_rule(25, 75), "mean-p95": rescaled_mean_rule(50, 95),
              "mean-p99": rescaled_mean_rule(50, 99)})
AGAINST = {"fit's three parts": PARTS, "the four parts": ALL}  # regret against the best of these
FEATURES = {"all": lambda run: True, "trained": lambda run: not run.startswith("random_init"),
            "untrained": lambda run: run.startswith("random_init")}


def part_scores(run: Path, t: Task, normal: str) -> dict[str, np.ndarray]:
    """Every part's cross-fitted normal scores (``held_KIND``) and test scores (``test_KIND``), and
    the test split's anomaly labels (``y``): the normal images, folds and seed ``bench_quality.py``'s
    ``fit`` used (the whole set's train and val splits, even where pretraining saw one class)."""
    cfg = FitConfig(run=str(run), detector="combined")
    precision.select(cfg.torch_precision, shipped=True)  # the features fit computes (fp32)
    backbone, spec, _ = load_model(run)
    normals = [normal_images(open_dataset(t.source, split), normal)[0] for split in ("train", "val")]
    test = drop_labels(open_dataset(t.source, "test"), t.ignore)
    model = feature_model_for(backbone, ("embedding", "patches"))
    outputs = collect_outputs(model, normals, spec, "cpu", 256)
    test_outputs = collect_outputs(model, [test], spec, "cpu", 256)
    held = crossfit_scores(cfg, outputs)
    bank = bank_features(outputs, seed=cfg.seed)
    scores = {kind: fit_detector(kind, bank, cfg.seed).score(test_outputs).raw_scores for kind in PARTS}
    pixels = np.concatenate([pixel_features(ds, spec) for ds in normals])
    held["pixels"] = crossfit_scores(replace(cfg, detector="knn"), {"embedding": pixels})["knn"]  # fit's folds
    scores["pixels"] = fit_knn(pixels).score({"embedding": pixel_features(test, spec)}).raw_scores
    return {**{f"held_{k}": v for k, v in held.items()}, **{f"test_{k}": v for k, v in scores.items()},
            "y": test.labels != resolve_label(test, normal)}


def one_row(saved: dict[str, np.ndarray]) -> dict[str, float]:
    """Test AUROC of each part and of each combination rule (``RULES``)."""
    held = {k: saved[f"held_{k}"] for k in ALL}
    z = {k: standardised(held[k], saved[f"test_{k}"]) for k in ALL}
    z_held = {k: standardised(held[k], held[k]) for k in ALL}
    row = {k: auroc(saved["y"], saved[f"test_{k}"]) for k in ALL}
    row.update({name: auroc(saved["y"], rule(z_held, z)) for name, rule in RULES.items()})
    return row


def cached_part_scores(run: Path, t: Task, normal: str) -> dict[str, np.ndarray]:
    """``part_scores``, kept beside the run as ``part_scores-NORMAL.npz`` and reused while it is
    newer than the run's weights (written whole or not at all)."""
    saved = run / f"part_scores-{normal}.npz"
    if not saved.exists() or saved.stat().st_mtime < (run / "model.safetensors").stat().st_mtime:
        partial = saved.with_suffix(".partial.npz")
        np.savez(partial, **part_scores(run, t, normal))
        os.replace(partial, saved)
    with np.load(saved) as f:
        return dict(f)


def runs_of(root: Path, t: Task, features: str) -> list[str]:
    """The run names (after the data set's prefix) of ``t`` kept in ``root`` of the kind ``features``."""
    prefix = run_dir(root, t, t.normals[0], "").name
    names = sorted(p.name[len(prefix):] for p in root.glob(prefix + "*") if p.is_dir())
    return [n for n in names if FEATURES[features](n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="folders bench_quality.py --out kept its runs in")
    ap.add_argument("--datasets", nargs="+", required=True, choices=list(TITLES))
    ap.add_argument("--classes", type=int, default=3, help="normal classes of the one-vs-rest sets, as bench_quality")
    ap.add_argument("--features", choices=list(FEATURES), default="all",
                    help="the runs to keep: trained, untrained (random init) or all")
    args = ap.parse_args()
    print(f"Raw pixels as a fourth part, and rules to combine the parts; on {cpu_flags()}")
    print("| data | run | " + " | ".join([*ALL, *RULES]) + " |")
    print("|" + "---|" * (2 + len(ALL) + len(RULES)))
    regrets = {against: [] for against in AGAINST}
    for name in args.datasets:
        found = False
        for root in map(Path, args.runs):
            if not any(root.glob(folder_prefix(TITLES[name]) + "*")):
                continue  # no runs of it here: make none of its derived data here either
            t = task(name, root, args.classes)
            for run_name in runs_of(root, t, args.features):
                found = True
                per_class = [one_row(cached_part_scores(run_dir(root, t, normal, run_name), t, normal))
                             for normal in t.normals]
                mean = {k: float(np.mean([r[k] for r in per_class])) for k in per_class[0]}
                for against, kinds in AGAINST.items():
                    regrets[against].append({r: max(mean[k] for k in kinds) - mean[r] for r in RULES})
                print(f"| {t.name} | {run_name} | " + " | ".join(f"{mean[k]:.3f}" for k in [*ALL, *RULES]) + " |",
                      flush=True)
        if not found:
            raise SystemExit(f"no {args.features} runs of {name} in {', '.join(args.runs)}: make them with "
                             "bench_quality.py --out DIR")
    print("\nRegret (the best single part's AUROC minus the rule's) over those rows")
    print("| rule | " + " | ".join(f"mean, against {a} | worst, against {a}" for a in regrets) + " |")
    print("|---|" + "---|---|" * len(regrets))
    for r in RULES:
        v = [[g[r] for g in rows] for rows in regrets.values()]
        print(f"| {r} | " + " | ".join(f"{np.mean(x):.3f} | {max(x):.3f}" for x in v) + " |")


if __name__ == "__main__":
    main()
