"""ONNX Runtime against PyTorch and the numpy detector on real images: the check an export must pass.

For each feature output, ``rel = max|ort - torch| / max|torch|`` (the largest absolute difference
over the largest magnitude of the reference); the same for the scores and maps the graph computes
(``anomaly_score``, ``anomaly_map``: ``export.scoring_graph``) against the numpy detector's on
PyTorch's features (for a model without them, the numpy detector's on ONNX Runtime's features).
The export passes when every ``rel <= tolerance`` and no image changes its decision at the
threshold (``raw >= t``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgessl.edge_runtime.backends.ort import cpu_session, run_batches
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.graph_scores import scores_of
from edgessl.train.feature_model import FeatureModel

TOLERANCE = 1e-4


@dataclass
class Verification:
    images: int
    tolerance: float
    outputs: dict  # output name -> {"max_abs_diff", "max_magnitude", "rel"}
    scores: dict | None  # same figures for the raw scores: the graph's against the numpy detector's
    maps: dict | None  # same figures for the anomaly maps, for a detector that makes them
    decision_flips: int | None
    passed: bool

    def to_dict(self) -> dict:
        return dict(vars(self))

    def describe(self) -> str:
        parts = [f"{n} rel {v['rel']:.2e}" for n, v in self.outputs.items()]
        parts += [f"{n} rel {v['rel']:.2e}" for n, v in (("scores", self.scores), ("maps", self.maps)) if v]
        if self.decision_flips is not None:
            parts.append(f"{self.decision_flips} decision flips")
        return f"{self.images} images: " + ", ".join(parts) + f" (tolerance {self.tolerance:g})"


def relative_diff(ref: np.ndarray, other: np.ndarray) -> dict:
    ref, other = np.asarray(ref, np.float64), np.asarray(other, np.float64)
    diff = float(np.abs(ref - other).max()) if ref.size else 0.0
    mag = float(np.abs(ref).max()) if ref.size else 0.0
    return {"max_abs_diff": diff, "max_magnitude": mag, "rel": diff / mag if mag > 0 else diff}


def torch_outputs(model: FeatureModel, batch: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """The PyTorch model's named outputs for a preprocessed ``N x C x H x W`` batch."""
    model = model.eval()
    parts: list[tuple[torch.Tensor, ...]] = []
    with torch.no_grad():
        for i in range(0, len(batch), batch_size):
            parts.append(model(torch.from_numpy(batch[i : i + batch_size])))
    return {n: torch.cat([p[j] for p in parts]).numpy() for j, n in enumerate(model.output_names)}


def verify_export(model: FeatureModel, onnx_path, batch: np.ndarray, detector=None, threshold=None,
                  tolerance: float = TOLERANCE) -> Verification:
    """Compare the ONNX file with ``model`` on ``batch`` (features, and scores/maps/decisions when given)."""
    if len(batch) == 0:
        raise EdgesslError("no images to verify the export on")
    ref, got = torch_outputs(model, batch), run_batches(cpu_session(onnx_path), batch)
    outputs = {n: relative_diff(ref[n], got[n]) for n in model.output_names}
    scores = maps = flips = None
    if detector is not None:
        expected, graph = detector.score(ref), scores_of(got, detector)
        scores = relative_diff(expected.raw_scores, graph.raw_scores)
        if expected.maps is not None:
            maps = relative_diff(expected.maps, graph.maps)
        if threshold is not None:
            flips = int((threshold.is_anomaly(expected.raw_scores) != threshold.is_anomaly(graph.raw_scores)).sum())
    passed = all(v["rel"] <= tolerance for v in [*outputs.values(), *(f for f in (scores, maps) if f)]) and not flips
    return Verification(len(batch), tolerance, outputs, scores, maps, flips, passed)
