"""The PyTorch checkpoint behind a bundle, in eager mode: the baseline ``edgessl bench`` compares with.

``eager_runner(run_dir, outputs)`` returns ``fn(batch)`` that runs the run's ``FeatureModel`` (the
same network the bundle's ONNX was exported from) on a preprocessed float32 ``N x C x H x W`` batch,
on the CPU, under ``torch.inference_mode``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .checkpoint import load_model
from .feature_model import FeatureModel


def eager_runner(run_dir: str | Path, outputs: list[str]) -> Callable[[np.ndarray], object]:
    backbone, _, _ = load_model(Path(run_dir))
    model = FeatureModel(backbone, with_patches="patches" in outputs).eval()

    def run(batch: np.ndarray):
        with torch.inference_mode():
            return model(torch.from_numpy(batch))

    return run
