"""Q/DQ INT8 models from computed ranges, through ONNX Runtime's quantizer.

The ranges (``collect_ranges``) are handed to ``quantize_static`` as a calibration cache, so ONNX
Runtime only rewrites the graph. Weights: int8, symmetric, per output channel. Activations per target:

* ``tensorrt`` -> ``model.int8-tensorrt.onnx``: int8, symmetric (zero point 0), Q/DQ on the *inputs*
  of Conv/ConvTranspose/Gemm/MatMul and of the residual Add only (TensorRT's placement: it fuses
  the DQ -> Conv -> (Add) -> ReLU chain and requantizes where the next Q/DQ pair sits). For
  TensorRT 10 and 11 (strongly typed) and ONNX Runtime's TensorRT/CUDA providers.
* ``cpu`` -> ``model.int8-cpu.onnx``: uint8, asymmetric (zero point from the range), every
  operator ONNX Runtime has an int8 kernel for, ReLU folded into the range: the form that
  ONNX Runtime's CPU kernels (U8S8) run fast; weights in 7 bits (``reduce_range``) against the
  16-bit saturation of AVX2 without VNNI.

``quant_pre_process`` (shape inference, graph optimisation) runs first, on the fp32 model.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

TRT_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add")


@dataclass(frozen=True)
class Target:
    name: str  # "tensorrt" | "cpu"
    key: str  # the bundle precision key
    model_file: str
    symmetric_activations: bool
    op_types: tuple[str, ...] | None  # None: every op ONNX Runtime can quantize
    inputs_only: bool  # Q/DQ on operator inputs only
    reduce_range: bool

    def describe(self) -> dict:
        return {"activations": "int8 symmetric" if self.symmetric_activations else "uint8 asymmetric",
                "weights": "int8 symmetric per-channel" + (" (7-bit range)" if self.reduce_range else ""),
                "quantized_ops": list(self.op_types) if self.op_types else "all ONNX Runtime int8 ops",
                "placement": "operator inputs only" if self.inputs_only else "operator inputs and outputs"}


TARGETS = {
    "tensorrt": Target("tensorrt", "int8-tensorrt", "model.int8-tensorrt.onnx", True, TRT_OPS, True, False),
    "cpu": Target("cpu", "int8-cpu", "model.int8-cpu.onnx", False, None, False, True),
}


def pre_process(fp32_path: Path, out_path: Path) -> None:
    """ONNX Runtime's quantization pre-processing (shape inference and graph optimisation)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)


def _op_types(target: Target) -> list[str]:
    if target.op_types:
        return list(target.op_types)
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


def quantizable_nodes(model_path: Path, target: Target) -> list[str]:
    """Names of the nodes the target quantizes (the candidates of the sensitivity analysis)."""
    ops = set(_op_types(target)) - {"Relu", "Clip", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose"}
    return [n.name for n in onnx.load(str(model_path)).graph.node if n.op_type in ops and n.name]


def write_qdq(pre_path: Path, ranges: dict[str, tuple[float, float]], target: Target, out_path: Path,
              exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    """Write the Q/DQ model of ``pre_path`` for ``target`` with the given activation ranges.

    ``exclude``: nodes kept in float; ``only``: quantize just these nodes (sensitivity analysis).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    data = {n: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for n, (lo, hi) in ranges.items()}
    extra = {"ActivationSymmetric": target.symmetric_activations, "WeightSymmetric": True}
    if target.inputs_only:
        extra["OpTypesToExcludeOutputQuantization"] = _op_types(target)
    with tempfile.TemporaryDirectory(prefix="edgessl-qdq-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
        quantize_static(
            str(pre_path), str(out_path), calibration_data_reader=None, quant_format=QuantFormat.QDQ,
            op_types_to_quantize=_op_types(target), per_channel=True, reduce_range=target.reduce_range,
            activation_type=QuantType.QInt8 if target.symmetric_activations else QuantType.QUInt8,
            weight_type=QuantType.QInt8, nodes_to_quantize=list(only) if only else None,
            nodes_to_exclude=list(exclude), calibrate_method=CalibrationMethod.MinMax,
            extra_options=extra, calibration_cache_path=str(cache))
