"""The training-side configs: plain dataclasses whose defaults are written here only (the CLI reads
them from here). Torch-free, so ``edgessl --help`` imports no torch.

``data = None`` on ``fit``, ``evaluate`` and ``finetune`` means the data the run records
(``run_records.with_recorded_data``, applied by ``fit_run``, ``evaluate_run`` and ``finetune``),
so forgetting ``--data`` never fits or evaluates on other data.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgessl.edge_runtime.streams.evaluation import EvalData

# The pretext tasks, one line each (a test checks it names every method of ``methods.METHODS``).
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
DETECTOR_KINDS = ("gaussian", "knn", "patch", "combined")
AUTO_SIZE = (32, 128)  # image size 0: the data's own, raised to the first or capped at the second (data.py)
PRECISIONS = ("auto", "fp32", "bf16")  # PyTorch's compute precision; what auto means: precision.py
# pretrain's budget when none is given: the optimiser steps of 64 the quality tables state (docs/detection.md),
# about 9 minutes on 2 AVX2 cores, 5 with AVX-512 bf16, under a minute on a GPU
PRETRAIN_STEPS = 650


@dataclass
class ComputeOptions:
    """Where and in what float type PyTorch computes: ``device`` auto (a GPU when present), cpu,
    cuda or cuda:N; ``torch_precision`` one of ``PRECISIONS``."""

    device: str = "auto"
    torch_precision: str = "auto"


@dataclass
class TrainingSchedule(ComputeOptions):
    """How long and how fast a training command trains (pretrain, finetune). ``time_budget``: wall
    seconds (0: no limit; the learning-rate schedule ends with it); ``max_steps``: optimizer steps
    (0: no limit). Each command sets its own ``batch_size``."""

    weight_decay: float = 1e-4
    seed: int = 0
    time_budget: float = 0.0
    max_steps: int = 0


@dataclass
class PretrainConfig(TrainingSchedule):
    """Self-supervised pretraining of ``backbone`` with ``method`` on the train split of ``data``
    (labels unused). ``image_size`` 0 and ``channels`` 0 follow the data (``data.infer_image_size``,
    ``data.infer_channels``); ``crop_min``: the smallest random crop of the augmented views (simclr,
    byol, moco), as a fraction of the image's area; ``epochs`` 0 trains until the time budget or the
    step limit ends it, or ``PRETRAIN_STEPS`` steps when none of the three is given (``pretrain.schedule``);
    ``max_images`` 0 uses all; ``init_weights``: a torchvision-layout state dict of the same architecture
    to start from."""

    data: str = "digits"
    method: str = "simclr"
    backbone: str = "resnet18"
    image_size: int = 32  # measured best per CPU second on every named set, docs/detection.md
    stem_stride: int | None = None  # None: by image size (backbones.stem_for_size); 0: the ImageNet stem
    channels: int = 0
    crop_min: float = 0.7  # the views' smallest crop (area fraction); measured on every named set, docs/detection.md
    epochs: int = 0
    batch_size: int = 64  # more images per CPU second than 32, and as good or better at equal seconds on 5 of 6 sets
    lr: float = 1e-3
    warmup_epochs: float = 0.5
    max_images: int = 0
    resume: bool = False
    init_weights: str = ""
    out: str = ""


@dataclass(frozen=True)
class FinetuneKind:
    """The schedule of one kind of fine-tuning, where ``FinetuneConfig`` leaves it at 0."""

    epochs: int
    lr: float


FINETUNE_KINDS = {"linear": FinetuneKind(epochs=100, lr=1e-2), "full": FinetuneKind(epochs=30, lr=1e-3)}


@dataclass
class FinetuneConfig(TrainingSchedule):
    """A classifier on ``run``'s backbone from a stratified, seeded ``label_fraction`` of the train
    split's labels; ``linear`` freezes the backbone. ``epochs`` 0 and ``lr`` 0 mean the kind's own
    (``FINETUNE_KINDS``)."""

    run: str = ""
    data: str | None = None
    label_fraction: float = 0.1
    linear: bool = False
    epochs: int = 0
    lr: float = 0.0
    warmup_epochs: float = 1.0
    out: str = ""
    batch_size: int = 64


@dataclass
class FitConfig(ComputeOptions):
    """A detector of kind ``detector`` (``DETECTOR_KINDS``; combined: the mean of the others'
    standardised scores, the one that did not lose on any data set measured, docs/detection.md) on
    the normal images of ``data``, its threshold for ``target_fpr`` at
    ``confidence`` from ``folds``-fold cross-fitted scores (``strict``: refuse when the images are
    too few). ``coreset``, ``k`` and ``top`` None take the detector's own defaults (``detectors/``);
    ``max_images`` 0 fits on every normal training image."""

    run: str = ""
    data: str | None = None
    normal_label: str | None = None
    detector: str = "combined"
    target_fpr: float = 0.01
    confidence: float = 0.9
    folds: int = 5
    strict: bool = False
    coreset: int | None = None
    k: int | None = None
    top: int | None = None
    max_images: int = 0
    seed: int = 0
    batch_size: int = 128


@dataclass
class EvaluateConfig(EvalData, ComputeOptions):
    """``run``'s frozen features (``k``-NN classifier, linear probe) and its detector's metrics;
    ``plots``: a folder for roc.png, histogram.png and top_scoring.png (needs a fitted detector)."""

    run: str = ""
    k: int = 200
    linear_probe: bool = True
    plots: str | None = None
