"""ONNX files and ONNX Runtime CPU sessions, torch-free: what calibration and export verification run."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def cpu_session(model: Path | bytes):
    """An ONNX Runtime CPU session of a model file (or its bytes)."""
    import onnxruntime as ort

    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])


def run_batches(session, batch: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """A session's named outputs for a ``N x C x H x W`` batch, run in chunks and concatenated."""
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    chunks = [session.run(names, {input_name: batch[i : i + batch_size]}) for i in range(0, len(batch), batch_size)]
    return {n: np.concatenate([c[j] for c in chunks]) for j, n in enumerate(names)}


def model_opset(path: Path) -> int:
    """The default-domain opset an ONNX file declares."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=0)
