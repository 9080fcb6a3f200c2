"""bf16 autocast + channels-last against fp32 on this CPU: the same SimCLR runs, loss curves, kNN
figures (kNN accuracy, one-class kNN AUROC) and throughput, in one run.

    .venv/bin/python benchmarks/bench_precision.py [--data ../shared/data/breastmnist/breastmnist.npz]
        [--steps 40] [--seeds 0,1] [--out runs/bench_precision]

Per seed, fp32 then bf16 (interleaved, so a busy machine slows both alike): ``edgessl pretrain``
(resnet18, SimCLR, 32 px, batch 64, the same seed, ``--max-steps``), then ``edgessl evaluate`` of
each run with fp32 features (kNN accuracy k=200, one-class kNN AUROC with
normal = ``--normal-label``), and the fp32 run evaluated again with bf16 features (the feature
extraction alone). Prints one table, the bf16/fp32 throughput ratio and the loss gap, and writes
``loss_bf16_vs_fp32.png``. On a CPU without native bf16 (``train/precision.py``) it says so: bf16
is then emulated and ``auto`` keeps fp32.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from edgessl.train import precision
from edgessl.train.evaluate import EvaluateConfig, evaluate_run
from edgessl.train.pretrain import PretrainConfig, pretrain

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "breastmnist" / "breastmnist.npz"


def losses(run: Path) -> np.ndarray:
    with (run / "metrics.csv").open() as f:
        return np.array([float(r["loss"]) for r in csv.DictReader(f)])


def evaluate(run: Path, data: str, normal: str, compute: str) -> dict:
    return evaluate_run(EvaluateConfig(run=str(run), data=data, normal_label=normal, linear_probe=False,
                                       device="cpu", torch_precision=compute))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--normal-label", default="1")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", default="runs/bench_precision")
    args = ap.parse_args()
    out = Path(args.out)
    print(f"CPU native bf16 (AVX512-BF16/AMX): {precision.cpu_has_native_bf16()}; "
          f"auto resolves to {precision.resolve('auto', precision.torch.device('cpu'))}")
    rows, curves = [], {}
    for seed in (int(s) for s in args.seeds.split(",")):
        for compute in ("fp32", "bf16"):
            run = out / f"{compute}-s{seed}"
            summary = pretrain(PretrainConfig(data=args.data, method="simclr", image_size=32, batch_size=64,
                                              max_steps=args.steps, seed=seed, device="cpu",
                                              torch_precision=compute, out=str(run)))
            curves[(compute, seed)] = losses(run)
            ev = evaluate(run, args.data, args.normal_label, "fp32")
            rows.append((compute, seed, "fp32", summary["images_per_s"], curves[(compute, seed)][-5:].mean(), ev))
        ev = evaluate(out / f"fp32-s{seed}", args.data, args.normal_label, "bf16")
        rows.append(("fp32", seed, "bf16", float("nan"), curves[("fp32", seed)][-5:].mean(), ev))
    print(f"SimCLR resnet18 32 px batch 64, {args.steps} steps, {args.data}; eval = precision of the "
          "evaluation's feature extraction; loss = mean of the last 5 steps")
    print(f"{'train':<6} {'seed':>4} {'eval':<6} {'images/s':>9} {'loss':>7} {'kNN acc':>8} {'kNN AUROC':>10}")
    for compute, seed, ev_p, ips, loss, ev in rows:
        print(f"{compute:<6} {seed:>4} {ev_p:<6} {ips:>9.1f} {loss:>7.4f} {ev['knn_accuracy']:>8.4f} "
              f"{ev['knn_auroc']:>10.4f}")
    speed = [r[3] for r in rows if r[0] == "bf16"], [r[3] for r in rows if r[0] == "fp32" and r[2] == "fp32"]
    print(f"bf16/fp32 pretraining throughput: {np.median(speed[0]) / np.median(speed[1]):.2f}x")
    gaps = [np.abs(curves[("bf16", s)] - curves[("fp32", s)]).max() for s in {k[1] for k in curves}]
    seed_gap = [np.abs(curves[("fp32", 0)] - curves[(c, s)]).max() for c, s in curves if s != 0 and c == "fp32"]
    print(f"max |loss bf16 - loss fp32| per step, same seed: {max(gaps):.4f}; "
          f"between fp32 seeds (noise): {max(seed_gap) if seed_gap else float('nan'):.4f}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (compute, seed), c in curves.items():
        ax.plot(np.arange(1, len(c) + 1), c, ("-" if compute == "fp32" else "--"), label=f"{compute} seed {seed}")
    ax.set_xlabel("step")
    ax.set_ylabel("SimCLR loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss_bf16_vs_fp32.png", dpi=100)
    print(f"wrote {out / 'loss_bf16_vs_fp32.png'}")


if __name__ == "__main__":
    main()
