"""The training-side commands' configs (torch-free, so ``edgessl --help`` imports no torch).

Each field is a command-line option (``edge_runtime.config.option``); its default is written here
only. ``data = None`` on ``fit``, ``evaluate`` and ``finetune`` means the data the run records
(``with_recorded_data``, applied by ``fit_run``, ``evaluate_run`` and ``finetune``), so
forgetting ``--data`` never fits or evaluates on other data.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from edgessl.edge_runtime.config import option
from edgessl.edge_runtime.data.evaluation import EvalData
from edgessl.edge_runtime.errors import EdgesslError

# One line per pretext task (a test checks it names every method).
METHOD_SUMMARIES = {
    "rotation": "predict which of 0/90/180/270 degrees each image was rotated by",
    "jigsaw": "reassemble 3x3 shuffled tiles: predict which of K permutations was applied",
    "simclr": "contrast two augmented views of each image against the batch (NT-Xent)",
    "byol": "predict an EMA target network's view embedding, no negatives",
    "moco": "MoCo v2: contrast against a queue of momentum-encoder keys",
    "gan": "train a DCGAN; the discriminator's trunk is the feature extractor",
    "cutpaste": "3-way: normal / pasted patch / thin scar (CutPaste)",
    "perlin": "texture pasted in Perlin-noise masks (DRAEM-style); predict the mask and whether",
}
BACKBONES = ("resnet18", "mobilenet_v3_small")
DETECTOR_KINDS = ("gaussian", "knn", "patch")
RUN = "RUN_DIR"
RECORDED = "the run's recorded data"


def device_option():
    return option("auto", "auto (a GPU when present), cpu, cuda, cuda:N")


PRECISIONS = ("auto", "fp32", "bf16")  # what auto means: train/precision.py


def precision_option(name: str = "precision", auto: str = "bf16 autocast + channels-last where the GPU/CPU does "
                                                           "bf16 natively (AVX512-BF16, AMX), else fp32"):
    return option("auto", f"PyTorch compute precision: auto = {auto}", choices=PRECISIONS, name=name,
                  aliases=("torch-precision",) if name != "torch-precision" else ())


def _run(help_text: str = "run directory (from `edgessl pretrain`)"):
    return option("", help_text, metavar=RUN, required=True)


@dataclass
class TrainingSchedule:
    """How long and how fast a training command trains (pretrain, finetune)."""

    batch_size: int = option(128, "images per optimizer step")
    weight_decay: float = option(1e-4, "AdamW weight decay")
    seed: int = option(0, "seeds the data order, augmentations and initialisation")
    time_budget: float = option(0.0, "stop after this wall time (0: no limit)", metavar="SECONDS")
    max_steps: int = option(0, "stop after this many optimizer steps (0: no limit)")
    device: str = device_option()
    torch_precision: str = precision_option()


@dataclass
class PretrainConfig(TrainingSchedule):
    data: str = option("digits", "dataset: digits, a MedMNIST .npz, an ImageFolder/MVTec-AD directory, a folder "
                                 "of images, a video, a ROS 2 bag, DICOM, a .csv/.txt list, or folders of these "
                                 "(docs/data-sources.md; labels unused)")
    method: str = option("simclr", "pretext task (see above; simclr measured best: docs/detection.md)",
                         choices=tuple(METHOD_SUMMARIES))
    backbone: str = option("resnet18", "network trained", choices=BACKBONES)
    image_size: int = option(32, "model input size in pixels")
    channels: int = option(0, "input channels; 0 infers from the data (1 grey, 3 colour)", choices=(0, 1, 3))
    epochs: int = option(0, "passes over the training images (0: until --time-budget is spent when given, else 1)")
    batch_size: int = option(32, "images per optimizer step (CPU: 32 takes four times the steps of 128 per minute)")
    lr: float = option(1e-3, "peak AdamW learning rate")
    warmup_epochs: float = option(0.5, "linear learning-rate warm-up")
    max_images: int = option(0, "use only the first N training images (0: all)")
    resume: bool = option(False, "continue the run in --out from its last checkpoint")
    time_budget: float = option(0.0, "train for this wall time (0: no limit); without --epochs, as many epochs "
                                     "as fit; the learning-rate schedule ends with it", metavar="SECONDS")
    init_weights: str = option("", "start the backbone from a torchvision-layout state dict (.pth or .safetensors) "
                                   "of the same architecture, then self-supervise on --data", metavar="FILE")
    out: str = option("", "run directory to write", metavar=RUN, required=True)


@dataclass
class FinetuneConfig(TrainingSchedule):
    run: str = _run("pretrained run directory")
    data: str | None = option(None, f"labelled dataset (default: {RECORDED})")
    label_fraction: float = option(0.1, "fraction of the train split's labels used (stratified, seeded)")
    linear: bool = option(False, "linear probe: freeze the backbone")
    epochs: int = option(0, "training epochs (0: 100 linear, 30 full)")
    lr: float = option(0.0, "peak AdamW learning rate (0: 1e-2 linear, 1e-3 full)")
    warmup_epochs: float = option(1.0, "linear learning-rate warm-up")
    out: str = option("", "run directory to write", metavar=RUN, required=True)
    batch_size: int = option(64, "images per optimizer step")


@dataclass
class FitConfig:
    run: str = _run()
    data: str | None = option(None, f"dataset whose normal images are fitted (default: {RECORDED})")
    normal_label: str | None = option(None, "class index or name of the normal class; omit for unlabelled data "
                                            "(every image is normal) or a train split of one class (MVTec's good)")
    detector: str = option("auto", "detector kind (see above); auto: the best measured for the run's method "
                                   "(simclr knn, perlin gaussian, cutpaste gaussian), else knn",
                           choices=("auto", *DETECTOR_KINDS))
    target_fpr: float = option(0.01, "false-positive rate to hold")
    confidence: float = option(0.9, "probability that the true false-positive rate is at most the target")
    folds: int = option(5, "cross-fitting folds for the threshold's held-out scores")
    strict: bool = option(False, "refuse when the images are too few for --target-fpr, instead of loosening it")
    coreset: int = option(0, "memory-bank size: knn embeddings (0: all), patch features (0: 2048)", metavar="N")
    k: int = option(0, "neighbours averaged (0: knn 5, patch 1)")
    top: int = option(0, "patch: image score = mean of the N largest map values (0: 1, the max)", metavar="N")
    max_images: int = option(0, "fit on the first N normal training images only (0: all)")
    seed: int = option(0, "seeds the coreset and the held-out split")
    device: str = device_option()
    torch_precision: str = precision_option(auto="fp32 here (the bank and threshold ship to an fp32/int8 device); "
                                                 "bf16 on request")
    batch_size: int = option(128, "images per forward pass")


@dataclass
class EvaluateConfig(EvalData):
    run: str = option("", "run directory to evaluate with PyTorch", metavar=RUN)
    k: int = option(200, "neighbours for the kNN classifier")
    linear_probe: bool = option(True, "the linear-probe accuracy")
    device: str = device_option()
    torch_precision: str = precision_option(  # --precision picks a bundle's model
        "torch-precision", auto="fp32 here (the scores are judged against the fp32 threshold that ships); bf16 on request")
    plots: str | None = option(None, "write roc.png, histogram.png and top_scoring.png (heatmaps) here (needs a "
                                     "fitted detector)", metavar="DIR")


def with_recorded_data(cfg, detector_first: bool = False):
    """``cfg`` with ``data`` filled in from the run when it is None (``recorded_data``)."""
    return cfg if cfg.data else replace(cfg, data=recorded_data(cfg.run, detector_first))


def recorded_data(run: str, detector_first: bool = False) -> str:
    """The data ``run`` records: its detector's (``detector/fit.json``, when ``detector_first``),
    else the pretraining's (``model.json``)."""
    if not (Path(run) / "model.json").is_file():
        raise EdgesslError(f"{run}: not a run directory (no model.json; train one with `edgessl pretrain`)")
    names = ("detector/fit.json", "model.json") if detector_first else ("model.json",)
    for name in names:
        path = Path(run) / name
        if path.is_file():
            data = json.loads(path.read_text()).get("data")
            if data:
                return str(data)
    raise EdgesslError(f"{run}: the run records no data; give --data")
