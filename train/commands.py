"""CLI registration of the training-side commands. Handlers import torch only when they run."""

from __future__ import annotations

import argparse
import inspect
import os
from dataclasses import asdict

from edgessl.edge_runtime.commands.options import Outcome, add_command, config_from_args, summary_lines
from edgessl.edge_runtime.data.evaluation import BundleEvalConfig
from edgessl.edge_runtime.data.source_text import SourceFlags
from edgessl.edge_runtime.errors import EdgesslError

from .config import METHOD_SUMMARIES, EvaluateConfig, FinetuneConfig, FitConfig, PretrainConfig, with_recorded_data

METHOD_HELP = "\n".join(f"  {k:<9} {v}" for k, v in METHOD_SUMMARIES.items())
METRIC_KEYS = ("auroc", "aupr", "f1_max", "fpr_at_threshold", "tpr_at_threshold", "pixel_auroc", "knn_accuracy",
               "knn_balanced_accuracy", "majority_class", "majority_rate", "linear_probe_accuracy", "knn_auroc")


def _save_config(out: str, cfg) -> None:
    from pathlib import Path

    import yaml

    path = Path(out)
    path.mkdir(parents=True, exist_ok=True)
    values = {f.replace("_", "-"): v for f, v in asdict(cfg).items()}  # the long option names
    (path / "config.yaml").write_text(yaml.safe_dump(values, sort_keys=False))


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _pretrain(args: argparse.Namespace) -> Outcome | None:
    """Train a backbone with a pretext task on the train split of --data (labels unused).

    Methods:
    {methods}

    Multi-GPU / multi-process: torchrun --nproc_per_node=N -m edgessl pretrain ...
    Example: edgessl pretrain --data digits --time-budget 300 --out runs/digits
    """
    from .pretrain import pretrain

    cfg = config_from_args(PretrainConfig, args)
    s = pretrain(cfg)
    if not _rank0():
        return None
    _save_config(cfg.out, cfg)
    title = f"edgessl pretrain: {cfg.method} {cfg.backbone} on {cfg.data} -> {cfg.out}"
    return Outcome(s, summary_lines(title, s, ("steps", "epochs_done", "images", "final_loss", "seconds",
                                               "images_per_s", "stopped_by_budget")))


def _evaluate(args: argparse.Namespace) -> Outcome:
    """Embed the train and test splits of --data with the run's frozen backbone and report weighted-kNN
    accuracy (k=200, cosine) with its balanced accuracy (mean per-class recall) and the majority class
    and its rate (what always answering it scores), linear-probe accuracy and, with a normal label,
    knn_auroc: one-class
    AUROC of the 5-NN cosine distance to normal training embeddings. When the run has a fitted
    detector (`edgessl fit`), 'auroc' is the detector's (scored by the runtime's numpy code) and the
    output adds aupr, f1_max, f1_threshold, threshold, fpr_at_threshold, tpr_at_threshold and, with
    ground-truth masks, pixel_auroc; without one, 'auroc' equals knn_auroc. The normal label
    defaults to the detector's. Give --run or --bundle.
    """
    if bool(args.run) == bool(args.bundle):
        raise EdgesslError("give one of --run RUN_DIR or --bundle BUNDLE")
    if args.bundle:
        from edgessl.edge_runtime.data.evaluation import evaluate_bundle

        from functools import partial

        from edgessl.edge_runtime.bundle import Bundle
        from edgessl.edge_runtime.data.datasets import open_dataset

        from .feature_metrics import feature_metrics

        cfg = config_from_args(BundleEvalConfig, args)
        data = cfg.data or Bundle.load(cfg.bundle).manifest.get("detector", {}).get("data")
        names = open_dataset(data, "test").class_names if data else None
        result = evaluate_bundle(cfg, partial(feature_metrics, class_names=names, k=args.k,
                                              linear_probe=args.linear_probe))
        title = (f"edgessl evaluate: bundle {args.bundle} ({result['precision']}, {result['backend']}) "
                 f"on {result['data']}")
    else:
        from .evaluate import evaluate_run

        result = evaluate_run(config_from_args(EvaluateConfig, args))
        title = f"edgessl evaluate: run {args.run} on {result['data']}"
    return Outcome(result, summary_lines(title, result, METRIC_KEYS + ("plots",)))


def _fit(args: argparse.Namespace) -> Outcome:
    """Fit a detector on the run's features of the normal images of --data's train and val splits, and
    its threshold on their cross-fitted scores (K folds: a detector fitted on K-1 folds scores the
    held-out one; the shipped detector is fitted on all). Anomalous images are never read. Writes
    RUN_DIR/detector/. Without --detector: the best measured for the run's method (simclr knn,
    perlin gaussian, cutpaste gaussian), else knn.

    Detectors:
      gaussian  Mahalanobis distance to the normal embeddings (Ledoit-Wolf shrinkage)
      knn       mean cosine distance to the k nearest normal embeddings (coreset optional)
      patch     PatchCore: per-patch distance to a coreset of normal patch features; heatmaps

    Threshold: the smallest order statistic of the held-out normal scores whose false-positive
    rate is at most --target-fpr with probability --confidence; scores are normalised so the
    median normal is 0 and the threshold 1.0 (anomalous: normalised >= 1.0). Too few images for
    the target: fit says so and uses the tightest rate they support at that confidence, recording
    both (--strict refuses instead).
    """
    from .fit import fit_run

    cfg = with_recorded_data(config_from_args(FitConfig, args))
    s = fit_run(cfg)
    th = s["threshold"]
    title = (f"edgessl fit: a {s['detector']} detector on {s['train_images']} normal images of {cfg.data} "
             f"(normal class {s['normal_label']}) -> {s['detector_dir']}")
    return Outcome(s, summary_lines(title, {**th, **s}, ("holdout_images", "folds", "target_fpr",
                                                         "requested_target_fpr", "confidence", "raw_threshold",
                                                         "holdout_fpr", "cpu_seconds")))


def _finetune(args: argparse.Namespace) -> Outcome | None:
    """Train a classifier on a pretrained run's backbone with a stratified, seeded fraction of the
    train split's labels; report test accuracy. --linear freezes the backbone (linear probe);
    otherwise backbone and head are fine-tuned. Writes a run directory (backbone + head.safetensors)
    that evaluate, fit and export load.
    Example: edgessl finetune --run runs/digits --label-fraction 0.1 --linear --out runs/digits-
    probe
    """
    from .finetune import finetune

    cfg = with_recorded_data(config_from_args(FinetuneConfig, args))
    s = finetune(cfg)
    if not _rank0():
        return None
    _save_config(cfg.out, cfg)
    how = "linear probe" if cfg.linear else "fine-tuning"
    return Outcome(s, summary_lines(f"edgessl finetune: {how} on {cfg.label_fraction:g} of {cfg.data}'s labels "
                                    f"-> {cfg.out}", s, ("labelled_images", "steps", "test_accuracy", "seconds")))


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return {
        **add_command(sub, "pretrain", _pretrain, PretrainConfig, SourceFlags,
                      help="self-supervised pretraining on unlabelled images",
                      description=inspect.cleandoc(_pretrain.__doc__).format(methods=METHOD_HELP)),
        **add_command(sub, "finetune", _finetune, FinetuneConfig, SourceFlags,
                      help="linear probe or full fine-tuning on a labelled fraction of the data"),
        **add_command(sub, "fit", _fit, FitConfig, SourceFlags, help="fit an anomaly detector and its threshold on normal images"),
        **add_command(sub, "evaluate", _evaluate, EvaluateConfig, BundleEvalConfig, SourceFlags,
                      help="feature quality (kNN, linear probe) and anomaly metrics of a run or a bundle"),
    }
