"""Scores of a dataset: the exported network in torch, then the runtime's own numpy detector.

Evaluation and fitting's held-out scores go through here, so they are the numbers the device
computes (the device runs the same network through ONNX Runtime and the same ``Detector.score``).
"""

from __future__ import annotations

import numpy as np
import torch

from edgessl.edge_runtime.data.image_datasets import ImageDataset
from edgessl.edge_runtime.detectors import Detector, DetectorOutput
from edgessl.edge_runtime.preprocess import PreprocessSpec

from .backbones import Backbone
from .features import feature_batches, feature_model_for


def score_dataset(backbone: Backbone, detector: Detector, ds: ImageDataset, spec: PreprocessSpec,
                  device: torch.device | str = "cpu", batch_size: int = 256) -> DetectorOutput:
    """Raw scores ``(N,)`` and maps ``(N, h, w)`` (or None) of every image of ``ds``, in order."""
    model = feature_model_for(backbone, detector.inputs)
    parts = [detector.score(outputs) for outputs in feature_batches(model, ds, spec, device, batch_size)]
    maps = np.concatenate([p.maps for p in parts]) if detector.has_maps else None
    return DetectorOutput(np.concatenate([p.raw_scores for p in parts]), maps)
