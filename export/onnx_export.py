"""The exported network to ONNX: TorchScript exporter, fixed opset, dynamic batch.

Input ``input`` ``(batch, C, H, W)`` float32 (the ``PreprocessSpec``'s tensor); outputs named as
``FeatureModel.output_names`` (``embedding`` ``(batch, D)``, optionally ``patches``), batch axis
dynamic. ``dynamo=False``: it emits exactly the requested opset in under a second.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import onnx
import torch

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec
from edgessl.train.feature_model import FeatureModel

INPUT_NAME = "input"
MIN_OPSET = 17  # the bundle's contract; per-channel Q/DQ needs 13, TensorRT 10/11 parse 17+
MAX_OPSET = 20  # the newest the TorchScript exporter writes


def check_opset(opset: int) -> None:
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise EdgesslError(f"ONNX opset {opset} is not supported: use {MIN_OPSET}-{MAX_OPSET} "
                           f"(INT8 Q/DQ and TensorRT 10/11 need {MIN_OPSET} or newer)")


def export_onnx(model: FeatureModel, spec: PreprocessSpec, path: Path, opset: int = 17) -> dict:
    """Write ``model`` to ``path`` and return its ``manifest["model"]`` description (names, shapes, opset)."""
    check_opset(opset)
    model = model.eval()
    dummy = torch.zeros(2, spec.channels, spec.image_size, spec.image_size)
    names = model.output_names
    axes = {n: {0: "batch"} for n in [INPUT_NAME, *names]}
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        outputs = model(dummy)
        torch.onnx.export(model, (dummy,), buf, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                          output_names=names, dynamic_axes=axes, do_constant_folding=True)
    proto = onnx.load_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    Path(path).write_bytes(buf.getvalue())
    return {
        "file": Path(path).name,
        "opset": opset,
        "input": {"name": INPUT_NAME, "shape": ["batch", spec.channels, spec.image_size, spec.image_size],
                  "dtype": "float32"},
        "outputs": {n: ["batch", *list(o.shape[1:])] for n, o in zip(names, outputs)},
    }

