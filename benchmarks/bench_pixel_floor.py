"""Would a raw-pixel part hold the floor? The combined detector with and without a fourth part, kNN
on raw pixels at two scales, measured on runs ``bench_quality.py --out DIR`` kept.

The pixel part, for an image normalised as the network's input ``x`` (``C x s x s``):

    p_j(x) = x average-pooled to s/2^j x s/2^j, flattened, L2-normalised (j = 1, 2);   p(x) = [p_1, p_2] / sqrt(2)

so its cosine distance to each bank image is the mean of the two scales' cosine distances; the
score is the mean distance to the k = 5 nearest (the knn detector's k) under that joint distance.
Per run: every part's cross-fitted normal scores (``fit``'s folds and seed), each part fitted on
all normal images scores the test split, and the combined score is the mean of the parts' scores
standardised by the median and IQR of their cross-fitted scores (``fit``'s rule), with the three
parts ``fit`` uses and with the pixel part as a fourth. **Regret** is the best single part's test
AUROC (the pixel part among them) minus the combination's. Labels only pick the normal class and
score the test split.

    python benchmarks/bench_quality.py --datasets mnist cifar10 --steps 1000 --seeds 0 --out runs
    python benchmarks/bench_pixel_floor.py --runs runs --datasets mnist cifar10

Every run of a data set in ``--runs`` is a row (random init and each step budget and seed).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from bench_quality import cpu_flags, one_class, run_dir, task
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


def pixel_features(ds: ImageDataset, spec: PreprocessSpec) -> np.ndarray:
    """``p(x)`` of every image of ``ds`` (the module docstring)."""
    x = normalise(load_images(ds, spec)[:], spec)  # a tensor, in memory or from the cache
    scales = [F.normalize(F.adaptive_avg_pool2d(x, spec.image_size // 2**j).flatten(1), dim=1) for j in (1, 2)]
    return (torch.cat(scales, 1) / 2**0.5).numpy()


def standardised(held_out: np.ndarray, test: np.ndarray) -> np.ndarray:
    median, iqr = standardisation(held_out)
    return (test - median) / iqr


def one_run(run: Path, source: str, test_source: str, ignore: list[str], normal: str) -> dict[str, float]:
    """Test AUROC of each part, of the three-part combination and of the four-part one."""
    cfg = FitConfig(run=str(run), detector="combined")
    precision.select(cfg.torch_precision, shipped=True)  # the features fit computes (fp32)
    backbone, spec, _ = load_model(run)
    normals = [normal_images(open_dataset(source, split), normal)[0] for split in ("train", "val")]
    test = drop_labels(open_dataset(test_source, "test"), ignore)
    y = test.labels != resolve_label(test, normal)
    model = feature_model_for(backbone, ("embedding", "patches"))
    outputs = collect_outputs(model, normals, spec, "cpu", 256)
    test_outputs = collect_outputs(model, [test], spec, "cpu", 256)
    held = crossfit_scores(cfg, outputs)
    bank = bank_features(outputs, seed=cfg.seed)
    scores = {kind: fit_detector(kind, bank, cfg.seed).score(test_outputs).raw_scores for kind in PARTS}
    pixels = np.concatenate([pixel_features(ds, spec) for ds in normals])
    held["pixels"] = crossfit_scores(replace(cfg, detector="knn"), {"embedding": pixels})["knn"]  # fit's folds
    scores["pixels"] = fit_knn(pixels).score({"embedding": pixel_features(test, spec)}).raw_scores
    row = {kind: auroc(y, s) for kind, s in scores.items()}
    for name, kinds in (("combined", PARTS), ("combined+pixels", (*PARTS, "pixels"))):
        row[name] = auroc(y, np.mean([standardised(held[k], scores[k]) for k in kinds], axis=0))
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", required=True, help="the folder bench_quality.py --out kept its runs in")
    ap.add_argument("--datasets", nargs="+", required=True)
    ap.add_argument("--classes", type=int, default=3, help="normal classes of the one-vs-rest sets, as bench_quality")
    args = ap.parse_args()
    root = Path(args.runs)
    print(f"kNN on raw pixels as a fourth part of the combined detector; on {cpu_flags()}")
    cols = [*PARTS, "pixels", "combined", "combined+pixels"]
    print("| data | run | " + " | ".join(cols) + " | regret combined | regret combined+pixels |")
    print("|" + "---|" * (len(cols) + 4))
    for name in args.datasets:
        t = task(name, root, args.classes)
        prefix = run_dir(root, t, t.normals[0], "").name
        for run_name in sorted(p.name[len(prefix):] for p in root.glob(prefix + "*") if p.is_dir()):
            rows = []
            for normal in t.normals:
                source = one_class(t.source, normal, root / f"{t.name}-{normal}.npz") if t.one_class else t.source
                run = run_dir(root, t, normal, run_name)
                rows.append(one_run(run, source, t.source, t.ignore, normal))
            mean = {k: float(np.mean([r[k] for r in rows])) for k in cols}
            best = max(mean[k] for k in (*PARTS, "pixels"))
            print(f"| {t.name} | {run_name} | " + " | ".join(f"{mean[k]:.3f}" for k in cols)
                  + f" | {best - mean['combined']:.3f} | {best - mean['combined+pixels']:.3f} |", flush=True)


if __name__ == "__main__":
    main()
