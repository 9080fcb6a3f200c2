"""Pretraining benchmark: every pretext task after the same CPU time budget, side by side with a
randomly initialised backbone and raw pixels, plus pretraining throughput at 28 and 64 px.

Protocol (PneumoniaMNIST by default; labels are used only for evaluation):
* pretrain on all train images for ``--time-budget`` seconds per method (the learning rate's
  cosine ends with the budget, see ``train/loop.py``);
* kNN accuracy: weighted kNN (k=200, cosine, T=0.1) from train to test embeddings;
* one-class AUROC: mean cosine distance to the 5 nearest normal (``--normal-label``) training
  embeddings, normal test images vs the rest;
* raw pixels: the same two figures on the normalised pixel vectors.

    python benchmarks/bench_pretrain.py --time-budget 300
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from edgessl.edge_runtime.data.datasets import open_dataset, resolve_label
from edgessl.edge_runtime.data.metrics import auroc
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.train.backbones import BackboneConfig, build_backbone
from edgessl.train.checkpoint import save_model
from edgessl.train.data import channel_stats, load_uint8, normalise
from edgessl.train.evaluate import EvaluateConfig, evaluate_run
from edgessl.train.knn import knn_distance, knn_predict
from edgessl.train.methods import METHODS
from edgessl.train.pretrain import PretrainConfig, pretrain

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def throughput(method: str, backbone: str, size: int, batch: int, steps: int) -> float:
    """Training images per second of ``method`` (forward, backward, AdamW step), after one warm-up step."""
    net = build_backbone(BackboneConfig(backbone, 1, size))
    m = METHODS[method].for_data(net, PreprocessSpec(size, 1, (0.5,), (0.25,)), 4096)
    opt = torch.optim.AdamW(m.param_groups(), lr=1e-4)
    x = torch.randint(0, 256, (batch, 1, size, size), dtype=torch.uint8)

    def step(i: int) -> None:
        loss, _ = m(x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        m.on_step_end(i / steps)

    step(0)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    return batch * steps / (time.perf_counter() - start)


def raw_pixels(data: str, size: int, normal: int) -> dict[str, dict]:
    """kNN accuracy and one-class AUROC on pixel vectors: as stored (x / 255) and normalised like the
    model input ((x / 255 - mean) / std, which centres them and so changes every cosine)."""
    train, test = open_dataset(data, "train"), open_dataset(data, "test")
    geometry = PreprocessSpec(size, 1, (0.5,), (0.25,))
    x_train, x_test = load_uint8(train, geometry), load_uint8(test, geometry)
    mean, std = channel_stats(x_train)
    variants = {"raw pixels (x/255)": PreprocessSpec(size, 1, (0.0,), (1.0,)),
                "raw pixels (normalised)": PreprocessSpec(size, 1, mean, std)}
    rows = {}
    for name, spec in variants.items():
        f_train = normalise(x_train, spec).flatten(1).numpy()
        f_test = normalise(x_test, spec).flatten(1).numpy()
        acc = float((knn_predict(f_train, train.labels, f_test, 200) == test.labels).mean())
        score = knn_distance(f_train[train.labels == normal], f_test, k=5)
        rows[name] = {"knn_accuracy": acc, "auroc": auroc(test.labels != normal, score), "steps": "-", "epochs": "-"}
    return rows


def random_init_run(data: str, backbone: str, size: int, out: Path) -> Path:
    """A run directory holding a randomly initialised backbone with the data's normalisation."""
    torch.manual_seed(0)
    geometry = PreprocessSpec(size, 1, (0.5,), (0.25,))
    mean, std = channel_stats(load_uint8(open_dataset(data, "train"), geometry))
    save_model(out, build_backbone(BackboneConfig(backbone, 1, size)), PreprocessSpec(size, 1, mean, std),
               {"method": "random-init"})
    return out


def evaluate(run: Path, data: str, normal: str) -> dict:
    r = evaluate_run(EvaluateConfig(run=str(run), data=data, normal_label=normal, linear_probe=False, device="cpu"))
    return {"knn_accuracy": r["knn_accuracy"], "auroc": r.get("knn_auroc", r["auroc"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--time-budget", type=float, default=300.0, help="pretraining seconds per method (default 300)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--backbone", default="resnet18")
    ap.add_argument("--image-size", type=int, default=28)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--normal-label", default="0")
    ap.add_argument("--throughput-steps", type=int, default=3)
    ap.add_argument("--out", default=None, help="keep the runs here (default: a temporary folder)")
    args = ap.parse_args()
    if not Path(args.data).exists() and args.data != "digits":
        raise SystemExit(f"{args.data} is not here; pass --data")
    root = Path(args.out or tempfile.mkdtemp(prefix="bench_pretrain_"))
    n_train = len(open_dataset(args.data, "train"))
    normal = resolve_label(open_dataset(args.data, "train"), args.normal_label)

    rows = raw_pixels(args.data, args.image_size, normal)
    rows["random init"] = {**evaluate(random_init_run(args.data, args.backbone, args.image_size, root / "random"),
                                      args.data, args.normal_label), "steps": 0, "epochs": 0.0}
    for name, r in rows.items():
        print(f"{name}: {r}", flush=True)
    for m in args.methods:
        summary = pretrain(PretrainConfig(
            data=args.data, method=m, backbone=args.backbone, image_size=args.image_size, epochs=1000,
            batch_size=args.batch_size, warmup_epochs=0.05, time_budget=args.time_budget, device="cpu",
            out=str(root / m)))
        rows[m] = {**evaluate(root / m, args.data, args.normal_label), "steps": summary["steps"],
                   "epochs": round(summary["images_seen"] / n_train, 2)}
        print(f"{m}: {rows[m]}", flush=True)
    speed = {}
    for m in args.methods:
        for size in (28, 64):
            speed[(m, size)] = throughput(m, args.backbone, size, 32, args.throughput_steps)
            print(f"{m} {size} px: {speed[(m, size)]:.1f} images/s", flush=True)

    print(f"\nPretraining benchmark: {args.data}, {args.backbone} at {args.image_size} px, batch {args.batch_size}, "
          f"{args.time_budget:.0f} s CPU budget per method, {torch.get_num_threads()} threads")
    print(f"| features | steps | epochs | kNN accuracy (k=200) | one-class AUROC (normal={args.normal_label}) |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['steps']} | {r['epochs']} | {r['knn_accuracy']:.3f} | {r['auroc']:.3f} |")
    print(f"\nThroughput, {args.backbone}, batch 32, training images/s (one forward/backward/step per image batch)")
    print("| method | 28 px | 64 px |")
    print("|---|---|---|")
    for m in args.methods:
        print(f"| {m} | {speed[(m, 28)]:.1f} | {speed[(m, 64)]:.1f} |")


if __name__ == "__main__":
    main()
