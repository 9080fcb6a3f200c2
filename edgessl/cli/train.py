"""``pretrain``, ``finetune``, ``fit`` and ``evaluate``: their options and handlers. Handlers
import torch only when they run."""

from __future__ import annotations

import argparse
import inspect
import os
from dataclasses import asdict, replace
from pathlib import Path

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.files import write_atomic
from edgessl.edge_runtime.outputs import output_folder, refuse_overlap
from edgessl.edge_runtime.streams.evaluation import BundleEvalConfig
from edgessl.train.config import (AUTO_SIZE, BACKBONES, DETECTOR_KINDS, FINETUNE_KINDS, METHOD_SUMMARIES,
                                  PRETRAIN_STEPS, EvaluateConfig, FinetuneConfig, FitConfig, PretrainConfig)
from edgessl.train.run_records import with_recorded_data

from .options import Command, Opt, Outcome, config_from_args, selected_data, summary_lines
from .shared import COMPUTE, MODEL, RUN_DIR, SELECTION, torch_precision

RECORDED = "default: the run's recorded data"
METRIC_KEYS = ("auroc", "aupr", "f1_max", "fpr_at_threshold", "tpr_at_threshold", "pixel_auroc", "knn_accuracy",
               "knn_balanced_accuracy", "majority_class", "majority_rate", "linear_probe_accuracy", "knn_auroc")


def _save_config(out: str, cfg) -> None:
    """``OUT/config.yaml``: the run's options, keyed by their long option names."""
    import yaml

    values = {f.replace("_", "-"): v for f, v in asdict(cfg).items()}
    write_atomic(Path(out) / "config.yaml", yaml.safe_dump(values, sort_keys=False).encode())


def _check_out(out: str, *inputs: str | None) -> None:
    """Refuse a run directory (``--out``) that is, or holds, one of the command's inputs, or is a file."""
    refuse_overlap(out, "--out", [p for p in inputs if p and Path(p).exists()])
    output_folder(out, "--out")


def _rank0() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


SCHEDULE = (
    Opt("--weight-decay", "AdamW weight decay"),
    Opt("--seed", "seeds the data order, augmentations and initialisation"),
    Opt("--time-budget", "train for this wall time (0: none); the learning-rate schedule ends with it",
        metavar="SECONDS"),
    Opt("--max-steps", "stop after this many optimizer steps (0: none)"),
    *COMPUTE,
    torch_precision("bf16 autocast + channels-last where the GPU/CPU does bf16 natively (AVX512-BF16, AMX), "
                    "else fp32"),
)


def _pretrain(args: argparse.Namespace) -> Outcome | None:
    """Train a backbone with a pretext task on the train split of --data (labels unused).

    Methods:
    {methods}

    Budget: --max-steps N optimizer steps, --time-budget SECONDS or --epochs N; with none of them,
    {steps} steps (with the other defaults about 9 minutes on 2 CPU cores without AVX-512, 5 with
    AVX-512 and bf16, under a minute on a GPU), and --resume alone continues to the run's own budget.
    Multi-GPU / multi-process: torchrun --nproc_per_node=N -m edgessl pretrain ...
    Example: edgessl pretrain --data digits --time-budget 300 --out runs/digits
    """
    from edgessl.train.pretrain import pretrain

    cfg = config_from_args(PretrainConfig, args, data=selected_data(args))
    _check_out(cfg.out, cfg.data, cfg.init_weights)
    s = pretrain(cfg)
    if not _rank0():
        return None
    budget = s["budget"]  # the budget it trained to, saved resolved: a later default cannot change a replay
    _save_config(cfg.out, replace(cfg, epochs=budget["epochs"], max_steps=budget["max_steps"],
                                  time_budget=budget["time_budget_s"]))
    title = f"edgessl pretrain: {cfg.method} {cfg.backbone} on {cfg.data} -> {cfg.out}"
    return Outcome(s, summary_lines(title, s, ("steps", "epochs_done", "images", "final_loss", "seconds",
                                               "images_per_s", "stopped_by_budget")))


PRETRAIN = Command(
    "pretrain", _pretrain, (PretrainConfig,), (
        Opt("--out", "run directory to write", metavar=RUN_DIR, required=True),
        Opt("--data", "dataset: digits, a MedMNIST .npz, an ImageFolder/MVTec-AD directory, a folder of images, a "
                      "video, a ROS 2 bag, DICOM, a .csv/.txt list, or folders of these (docs/data-sources.md; "
                      "labels unused)"),
        Opt("--method", "pretext task (see above)", choices=tuple(METHOD_SUMMARIES)),
        Opt("--backbone", "network trained", choices=BACKBONES),
        Opt("--image-size", "model input size in pixels (0: the data's own, from {} up to {} px)".format(*AUTO_SIZE)),
        Opt("--stem-stride", "the backbone stem's stride: 1, 2, or 0 for the ImageNet stem (default: by image "
                             "size, docs/detection.md)", choices=(0, 1, 2)),
        Opt("--channels", "input channels; 0 infers from the data (1 grey, 3 colour)", choices=(0, 1, 3)),
        Opt("--crop-min", "the smallest random crop of the augmented views, as a fraction of the image's area "
                          "(simclr, byol, moco; the other methods ignore it): lower teaches more invariance to "
                          "scale and position, higher keeps more of the local texture anomalies show in "
                          "(0.85 or 1 helped a surface texture, 0.7 held across objects and scans: "
                          "docs/detection.md)", metavar="FRACTION"),
        Opt("--epochs", "passes over the training images (0: until --time-budget or --max-steps ends training; "
                        f"with none of the three, {PRETRAIN_STEPS} optimizer steps, or with --resume the run's own "
                        "budget)"),
        Opt("--batch-size", "images per optimizer step (a step of 64 costs less than two of 32 on a CPU, so "
                            "the same --time-budget sees more images: docs/detection.md)"),
        Opt("--lr", "peak AdamW learning rate"),
        Opt("--warmup-epochs", "linear learning-rate warm-up"),
        Opt("--max-images", "use only the first N training images (0: all)"),
        Opt("--resume", "continue the run in --out from its last checkpoint"),
        Opt("--init-weights", "start the backbone from a torchvision-layout state dict (.pth or .safetensors) of "
                              "the same architecture, then self-supervise on --data", metavar="FILE"),
        *SCHEDULE, *SELECTION),
    help="self-supervised pretraining on unlabelled images",
    description=inspect.cleandoc(_pretrain.__doc__).format(
        steps=PRETRAIN_STEPS, methods="\n".join(f"  {k:<9} {v}" for k, v in METHOD_SUMMARIES.items())))


def _per_kind(what: str) -> str:
    return ", ".join(f"{getattr(d, what):g} {kind}" for kind, d in FINETUNE_KINDS.items())


def _finetune(args: argparse.Namespace) -> Outcome | None:
    """Train a classifier on a pretrained run's backbone with a stratified, seeded fraction of the
    train split's labels; report test accuracy. --linear freezes the backbone (linear probe);
    otherwise backbone and head are fine-tuned. Writes a run directory (backbone + head.safetensors)
    that evaluate, fit and export load.
    Example: edgessl finetune --run runs/digits --label-fraction 0.1 --linear --out runs/digits-
    probe
    """
    from edgessl.train.finetune import finetune

    cfg = with_recorded_data(config_from_args(FinetuneConfig, args, data=selected_data(args)))
    _check_out(cfg.out, cfg.run, cfg.data)
    s = finetune(cfg)
    if not _rank0():
        return None
    _save_config(cfg.out, cfg)
    how = "linear probe" if cfg.linear else "fine-tuning"
    return Outcome(s, summary_lines(f"edgessl finetune: {how} on {cfg.label_fraction:g} of {cfg.data}'s labels "
                                    f"-> {cfg.out}", s, ("labelled_images", "steps", "test_accuracy", "seconds")))


FINETUNE = Command(
    "finetune", _finetune, (FinetuneConfig,), (
        Opt("--run", "pretrained run directory", metavar=RUN_DIR, required=True),
        Opt("--out", "run directory to write", metavar=RUN_DIR, required=True),
        Opt("--data", f"labelled dataset ({RECORDED})"),
        Opt("--label-fraction", "fraction of the train split's labels used (stratified, seeded)"),
        Opt("--linear", "linear probe: freeze the backbone"),
        Opt("--epochs", "training epochs (0: the kind's own: " + _per_kind("epochs") + ")"),
        Opt("--lr", "peak AdamW learning rate (0: the kind's own: " + _per_kind("lr") + ")"),
        Opt("--warmup-epochs", "linear learning-rate warm-up"),
        Opt("--batch-size", "images per optimizer step"),
        *SCHEDULE, *SELECTION),
    help="linear probe or full fine-tuning on a labelled fraction of the data")


def _fit(args: argparse.Namespace) -> Outcome:
    """Fit a detector on the run's features of the normal images of --data's train and val splits, and
    its threshold on their cross-fitted scores (K folds: a detector fitted on K-1 folds scores the
    held-out one; the shipped detector is fitted on all). Anomalous images are never read. Writes
    RUN_DIR/detector/.

    Detectors:
      gaussian  Mahalanobis distance to the normal embeddings (Ledoit-Wolf shrinkage)
      knn       mean cosine distance to the k nearest normal embeddings (coreset optional)
      patch     PatchCore: per-patch distance to a coreset of normal patch features; heatmaps
      combined  the mean of the three above, each standardised on its cross-fitted normal scores;
                heatmaps (the default: never far from the best single detector, docs/detection.md)

    Threshold: the smallest order statistic of the held-out normal scores whose false-positive
    rate is at most --target-fpr with probability --confidence; scores are normalised so the
    median normal is 0 and the threshold 1.0 (anomalous: normalised >= 1.0). Too few images for
    the target: fit says so and uses the tightest rate they support at that confidence, recording
    both (--strict refuses instead).
    """
    from edgessl.train.fit import fit_run

    cfg = with_recorded_data(config_from_args(FitConfig, args, data=selected_data(args)))
    s = fit_run(cfg)
    th = s["threshold"]
    title = (f"edgessl fit: a {s['detector']} detector on {s['train_images']} normal images of {cfg.data} "
             f"(normal class {s['normal_label']}) -> {s['detector_dir']}")
    return Outcome(s, summary_lines(title, {**th, **s}, ("holdout_images", "folds", "target_fpr",
                                                         "requested_target_fpr", "confidence", "raw_threshold",
                                                         "holdout_fpr", "cpu_seconds")))


FIT = Command(
    "fit", _fit, (FitConfig,), (
        Opt("--run", "run directory (from `edgessl pretrain`)", metavar=RUN_DIR, required=True),
        Opt("--data", f"dataset whose normal images are fitted ({RECORDED})"),
        Opt("--normal-label", "class index or name of the normal class; omit for unlabelled data (every image is "
                              "normal) or a train split of one class (MVTec's good)"),
        Opt("--detector", "detector kind (see above)", choices=DETECTOR_KINDS),
        Opt("--target-fpr", "false-positive rate to hold"),
        Opt("--confidence", "probability that the true false-positive rate is at most the target"),
        Opt("--folds", "cross-fitting folds for the threshold's held-out scores"),
        Opt("--strict", "refuse when the images are too few for --target-fpr, instead of loosening it"),
        Opt("--coreset", "memory-bank size: knn embeddings, patch features (default: the detector's own)",
            metavar="N"),
        Opt("--k", "neighbours averaged (default: the detector's own)"),
        Opt("--top", "patch: image score = mean of the N largest map values, 0 the whole map's mean "
            "(default: the detector's own)", metavar="N"),
        Opt("--max-images", "fit on the first N normal training images only (0: all)"),
        Opt("--seed", "seeds the coreset and the held-out split"),
        *COMPUTE,
        torch_precision("fp32 here (the bank and threshold ship to an fp32/int8 device); bf16 on request"),
        Opt("--batch-size", "images per forward pass"),
        *SELECTION),
    help="fit an anomaly detector and its threshold on normal images")


def _evaluate(args: argparse.Namespace) -> Outcome:
    """Embed the train and test splits of --data with the run's frozen backbone and report weighted-kNN
    accuracy (cosine, --k neighbours) with its balanced accuracy (mean per-class recall) and the
    majority class and its rate (what always answering it scores), linear-probe accuracy and, with a
    normal label, knn_auroc: one-class AUROC of the 5-NN cosine distance to normal training
    embeddings. When the run has a fitted detector (`edgessl fit`), 'auroc' is the detector's (scored
    by the runtime's numpy code) and the output adds aupr, f1_max, f1_threshold, threshold,
    fpr_at_threshold, tpr_at_threshold and, with ground-truth masks, pixel_auroc; without one,
    'auroc' equals knn_auroc. The normal label defaults to the detector's. Give --run or --bundle.
    A bundle with a classifier head (`edgessl export` of a fine-tuned run) adds 'classification':
    accuracy, balanced accuracy, per-class recall, the AUROC of the positive class's probability
    (its --positive-class) and the confusion matrix; one without a detector has no anomaly keys.
    """
    data = selected_data(args)
    if bool(args.run) == bool(args.bundle):
        raise EdgesslError("give one of --run RUN_DIR or --bundle BUNDLE")
    if args.bundle:
        from functools import partial

        from edgessl.edge_runtime.streams.evaluation import evaluate_bundle
        from edgessl.train.feature_metrics import feature_metrics

        result = evaluate_bundle(config_from_args(BundleEvalConfig, args, data=data),
                                 partial(feature_metrics, k=args.k, linear_probe=args.linear_probe))
        title = (f"edgessl evaluate: bundle {args.bundle} ({result['precision']}, {result['backend']}) "
                 f"on {result['data']}")
    else:
        from edgessl.train.evaluate import evaluate_run

        result = evaluate_run(config_from_args(EvaluateConfig, args, data=data))
        title = f"edgessl evaluate: run {args.run} on {result['data']}"
    text = summary_lines(title, result, METRIC_KEYS + ("plots",))
    if "classification" in result:
        c = result["classification"]
        text += "\n" + summary_lines("classifier:", c, ("accuracy", "balanced_accuracy", "positive_class",
                                                         "positive_auroc"))
    return Outcome(result, text)


EVALUATE = Command(
    "evaluate", _evaluate, (EvaluateConfig, BundleEvalConfig), (
        Opt("--run", "run directory to evaluate with PyTorch", metavar=RUN_DIR),
        Opt("--bundle", "evaluate an exported bundle through the torch-free runtime instead of --run (same keys; "
                        "--precision/--backend choose the model)", metavar="BUNDLE"),
        Opt("--data", "labelled dataset (default: the data the detector was fitted on)"),
        Opt("--normal-label", "class index or name of the normal class (default: the detector's)"),
        Opt("--ignore-label", "leave these classes out of the test metrics (e.g. ELPV's uncertain)",
            dest="ignore_labels", metavar="LABEL"),
        Opt("--batch-size", "images per inference call"),
        Opt("--k", "neighbours for the kNN classifier"),
        Opt("--no-linear-probe", "turn off: the linear-probe accuracy"),
        Opt("--plots", "write roc.png, histogram.png and top_scoring.png (heatmaps) here (needs a fitted detector)",
            metavar="DIR"),
        *COMPUTE,
        torch_precision("fp32 here (the scores are judged against the fp32 threshold that ships); bf16 on request"),
        *MODEL,
        *SELECTION),
    help="feature quality (kNN, linear probe) and anomaly metrics of a run or a bundle")

COMMANDS = (PRETRAIN, FINETUNE, FIT, EVALUATE)
