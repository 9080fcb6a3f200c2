"""Scores the exported graph computes itself, or the numpy detector's when it does not.

A bundle exported by this edgessl has models whose outputs include ``anomaly_score`` ``(N,)`` and,
for a detector with maps, ``anomaly_map`` ``(N, h, w)`` (``export.scoring_graph``), beside the
features; the manifest lists them in ``model.outputs``. A model without them (an older bundle) is
scored by the numpy detector from its features, which is also the reference the graph's scores
were verified against at export.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from .detectors import Detector, DetectorOutput

SCORE_OUTPUT = "anomaly_score"
MAP_OUTPUT = "anomaly_map"
SCORING_OUTPUTS = (SCORE_OUTPUT, MAP_OUTPUT)


def scores_in_graph(manifest: dict) -> bool:
    """The bundle's models compute ``anomaly_score`` (its manifest lists the output)."""
    return SCORE_OUTPUT in manifest.get("model", {}).get("outputs", {})


def scores_of(outputs: Mapping[str, np.ndarray], detector: Detector) -> DetectorOutput:
    """``outputs``' own ``anomaly_score``/``anomaly_map`` when the model made them, else ``detector.score``."""
    if SCORE_OUTPUT not in outputs:
        return detector.score(outputs)
    amap = outputs.get(MAP_OUTPUT)
    return DetectorOutput(np.asarray(outputs[SCORE_OUTPUT], np.float64),
                          None if amap is None else np.asarray(amap, np.float32))


def features_of(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The feature outputs (``embedding``, ``patches``): ``outputs`` without the scoring ones."""
    return {k: v for k, v in outputs.items() if k not in SCORING_OUTPUTS}
