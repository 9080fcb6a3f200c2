"""What every inference backend offers: named outputs for a float32 ``N x C x H x W`` batch."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np

BACKEND_NAMES = ("tensorrt", "ort-tensorrt", "ort-cuda", "ort-cpu")  # best first: what `auto` tries
CHOICES = ("auto",) + BACKEND_NAMES


@runtime_checkable
class Backend(Protocol):
    """``run(batch)`` -> ``{output name: array with the batch as first axis}``.

    ``name`` is one of ``BACKEND_NAMES``; ``providers`` lists what actually executes the model
    (ONNX Runtime execution providers, or ``["TensorRT <version>"]``).
    """

    name: str
    providers: list[str]

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...


def in_chunks(run, batch: np.ndarray, max_batch: int | None) -> dict[str, np.ndarray]:
    """``run`` (a batch -> named outputs) over ``batch`` in chunks of at most ``max_batch`` images
    (None: no limit), outputs concatenated; one call when the batch fits."""
    if max_batch is None or len(batch) <= max_batch:
        return run(batch)
    parts = [run(batch[i : i + max_batch]) for i in range(0, len(batch), max_batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
