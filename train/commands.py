"""CLI registration of the training-side commands. Handlers import torch only when they run."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from edgessl.edge_runtime.commands.options import config_from_args
from edgessl.edge_runtime.commands.run import add_trust_options


def _save_config(out: str, cfg) -> None:
    from pathlib import Path

    import yaml

    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(asdict(cfg), sort_keys=False))


def _pretrain(args: argparse.Namespace) -> int:
    from .pretrain import PretrainConfig, pretrain

    cfg = config_from_args(PretrainConfig, args)
    summary = pretrain(cfg)
    if summary.get("world_size", 1) == 1 or int(__import__("os").environ.get("RANK", "0")) == 0:
        _save_config(cfg.out, cfg)
        print(json.dumps(summary, indent=2))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.bundle:
        return _evaluate_bundle(args)
    from .evaluate import EvaluateConfig, evaluate_run

    result = evaluate_run(config_from_args(EvaluateConfig, args))
    print(json.dumps(result, indent=2 if not args.json else None))
    return 0


def _evaluate_bundle(args: argparse.Namespace) -> int:
    from edgessl.edge_runtime.data.evaluation import BundleEvalConfig, evaluate_bundle

    from .bundle_evaluate import feature_metrics

    result = evaluate_bundle(config_from_args(BundleEvalConfig, args), feature_metrics(args.k, args.linear_probe))
    print(json.dumps(result, indent=2 if not args.json else None))
    return 0


def _fit(args: argparse.Namespace) -> int:
    from .fit import FitConfig, fit_run

    print(json.dumps(fit_run(config_from_args(FitConfig, args)), indent=2))
    return 0


def _register_fit(sub) -> argparse.ArgumentParser:
    f = sub.add_parser(
        "fit", help="fit an anomaly detector and its threshold on normal images",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit a detector on the run's features of the normal images of --data's train split, and its "
                    "threshold on the normal images of the val split (carved from train when the source has "
                    "none). Anomalous images are never read. Writes RUN_DIR/detector/.\n\n"
                    "Detectors:\n"
                    "  gaussian  Mahalanobis distance to the normal embeddings (Ledoit-Wolf shrinkage)\n"
                    "  knn       mean cosine distance to the k nearest normal embeddings (coreset optional)\n"
                    "  patch     PatchCore: per-patch distance to a coreset of normal patch features; heatmaps\n\n"
                    "Threshold: the smallest order statistic of the held-out normal scores whose false-positive\n"
                    "rate is at most --target-fpr with probability --confidence; scores are normalised so the\n"
                    "median normal is 0 and the threshold 1.0 (anomalous: normalised >= 1.0).")
    f.add_argument("--run", required=True, metavar="RUN_DIR")
    f.add_argument("--data", default="digits", help="data source (default: digits)")
    f.add_argument("--normal-label", default=None,
                   help="class index or name of the normal class; omit for unlabelled data (every image is "
                        "taken as normal) or a train split of one class (MVTec's good)")
    f.add_argument("--detector", default="knn", choices=("gaussian", "knn", "patch"), help="(default: knn)")
    f.add_argument("--target-fpr", type=float, default=0.01, help="false-positive rate to hold (default: 0.01)")
    f.add_argument("--confidence", type=float, default=0.9,
                   help="probability that the true false-positive rate is at most the target (default: 0.9)")
    f.add_argument("--coreset", type=int, default=0, metavar="N",
                   help="memory-bank size: knn embeddings (default 0: all), patch features (default 0: 2048)")
    f.add_argument("--k", type=int, default=0, help="neighbours averaged (default 0: knn 5, patch 1)")
    f.add_argument("--max-images", type=int, default=0, help="fit on the first N normal training images only")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--batch-size", type=int, default=128)
    _add_device(f)
    f.set_defaults(handler=_fit)
    return f


def _finetune(args: argparse.Namespace) -> int:
    import os

    from .finetune import FinetuneConfig, finetune

    cfg = config_from_args(FinetuneConfig, args)
    summary = finetune(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        _save_config(cfg.out, cfg)
        print(json.dumps(summary, indent=2))
    return 0


def _register_finetune(sub) -> argparse.ArgumentParser:
    f = sub.add_parser(
        "finetune", help="linear probe or full fine-tuning on a labelled fraction of the data",
        description="Train a classifier on a pretrained run's backbone with a stratified, seeded fraction of the "
                    "train split's labels; report test accuracy. --linear freezes the backbone (linear probe); "
                    "otherwise backbone and head are fine-tuned. Writes a run directory (backbone + "
                    "head.safetensors) that evaluate, fit and export load.\n"
                    "Example: edgessl finetune --run runs/digits --data digits --label-fraction 0.1 --linear "
                    "--out runs/digits-probe")
    f.add_argument("--run", required=True, metavar="RUN_DIR", help="pretrained run directory")
    f.add_argument("--data", default="digits", help="labelled data source (default: digits)")
    f.add_argument("--label-fraction", type=float, default=0.1, help="fraction of train labels used (default: 0.1)")
    f.add_argument("--linear", action="store_true", help="linear probe: freeze the backbone")
    f.add_argument("--epochs", type=int, default=0, help="training epochs (default 0: 100 linear, 30 full)")
    f.add_argument("--batch-size", type=int, default=64)
    f.add_argument("--lr", type=float, default=0.0, help="peak AdamW learning rate (default: 1e-2 linear, 1e-3 full)")
    f.add_argument("--weight-decay", type=float, default=1e-4)
    f.add_argument("--warmup-epochs", type=float, default=1.0)
    f.add_argument("--seed", type=int, default=0, help="seeds the labelled subset and the training")
    f.add_argument("--time-budget", type=float, default=0.0, metavar="SECONDS", help="stop after this wall time")
    f.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps")
    f.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    _add_device(f)
    f.set_defaults(handler=_finetune)
    return f


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda (default: auto)")


# One line per pretext task (kept torch-free for --help; a test checks it names every method).
METHOD_SUMMARIES = {
    "rotation": "predict which of 0/90/180/270 degrees each image was rotated by",
    "jigsaw": "reassemble 3x3 shuffled tiles: predict which of K permutations was applied",
    "simclr": "contrast two augmented views of each image against the batch (NT-Xent)",
    "byol": "predict an EMA target network's view embedding, no negatives",
    "moco": "MoCo v2: contrast against a queue of momentum-encoder keys",
    "gan": "train a DCGAN; the discriminator's trunk is the feature extractor",
}
METHOD_HELP = "\n".join(f"  {k:<9} {v}" for k, v in METHOD_SUMMARIES.items())


def register(sub) -> dict[str, argparse.ArgumentParser]:
    p = sub.add_parser(
        "pretrain", help="self-supervised pretraining on unlabelled images",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a backbone with a pretext task on the train split of --data (labels unused).\n\n"
                    "Methods:\n" + METHOD_HELP + "\n\nMulti-GPU / multi-process: "
                    "torchrun --nproc_per_node=N -m edgessl pretrain ...\n"
                    "Example: edgessl pretrain --data digits --method simclr --epochs 5 --out runs/digits")
    p.add_argument("--data", default="digits", help="data source: digits, a .npz, or a directory (default: digits)")
    p.add_argument("--method", default="simclr", choices=list(METHOD_SUMMARIES), help="pretext task (default: simclr)")
    p.add_argument("--backbone", default="resnet18", help="resnet18 or mobilenet_v3_small (default: resnet18)")
    p.add_argument("--image-size", type=int, default=32, help="model input size in pixels (default: 32)")
    p.add_argument("--channels", type=int, default=0, choices=(0, 1, 3), help="input channels; 0 infers from the data")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate (default: 1e-3)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-budget", type=float, default=0.0, metavar="SECONDS", help="stop after this wall time")
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many optimizer steps")
    p.add_argument("--max-images", type=int, default=0, help="use only the first N training images")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory to write")
    _add_device(p)
    p.set_defaults(handler=_pretrain)

    e = sub.add_parser(
        "evaluate", help="feature quality (kNN, linear probe) and anomaly metrics of a run",
        description="Embed the train and test splits of --data with the run's frozen backbone and report "
                    "weighted-kNN accuracy (k=200, cosine), linear-probe accuracy and, with a normal label, "
                    "knn_auroc: one-class AUROC of the 5-NN cosine distance to normal training embeddings. "
                    "When the run has a fitted detector (`edgessl fit`), 'auroc' is the detector's (scored by "
                    "the runtime's numpy code) and the output adds aupr, f1_max, f1_threshold, threshold, "
                    "fpr_at_threshold, tpr_at_threshold and, with ground-truth masks, pixel_auroc; without "
                    "one, 'auroc' equals knn_auroc. The normal label defaults to the detector's.")
    which = e.add_mutually_exclusive_group(required=True)
    which.add_argument("--run", metavar="RUN_DIR")
    which.add_argument("--bundle", metavar="BUNDLE", help="evaluate an exported bundle through the torch-free runtime "
                       "instead (same keys; --precision/--backend choose the model)")
    e.add_argument("--precision", default="fp32", choices=("fp32", "int8"), help="with --bundle (default: fp32)")
    e.add_argument("--backend", default="auto", help="with --bundle: auto, ort-cpu, ort-cuda, ort-tensorrt, tensorrt")
    add_trust_options(e)  # with --bundle
    e.add_argument("--data", default="digits")
    e.add_argument("--normal-label", default=None, help="class index or name of the normal class (MVTec: good)")
    e.add_argument("--ignore-label", dest="ignore_labels", action="append", default=[],
                   help="leave a class out of the test metrics (repeatable; e.g. ELPV's 'uncertain')")
    e.add_argument("--k", type=int, default=200, help="neighbours for the kNN classifier (default: 200)")
    e.add_argument("--no-linear-probe", dest="linear_probe", action="store_false")
    e.add_argument("--json", action="store_true", help="print one JSON object on one line")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--plots", default=None, metavar="DIR",
                   help="write roc.png, histogram.png and top_scoring.png (heatmaps) here (needs a fitted detector)")
    _add_device(e)
    e.set_defaults(handler=_evaluate)
    return {"pretrain": p, "evaluate": e, "fit": _register_fit(sub),
            "finetune": _register_finetune(sub)}
