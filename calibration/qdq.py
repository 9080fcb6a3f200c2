"""Q/DQ INT8 models from computed ranges, through ONNX Runtime's quantizer.

The ranges (``collect_ranges``) are handed to ``quantize_static`` as a calibration cache, so ONNX
Runtime only rewrites the graph. Weights: int8, symmetric, per output channel (axis 0). Per target:

* ``tensorrt`` -> ``model.int8-tensorrt.onnx``, the form TensorRT 10 and 11 parse (strongly typed,
  explicit quantization) and ONNX Runtime's TensorRT/CUDA providers run. NVIDIA's Q/DQ placement:
  Q/DQ on the *inputs* of Conv/ConvTranspose/Gemm/MatMul (never on their outputs: TensorRT fuses
  DQ -> Conv -> (Add) -> ReLU and requantizes where the next pair sits), a dedicated pair per
  quantized consumer, and on the *residual* input of each residual Add only (the shortcut, so the
  Add fuses into the other branch's convolution: ``residual_input``; a shortcut that already feeds
  a convolution reads that convolution's DequantizeLinear, as ONNX Runtime rewires every reader of
  a quantized tensor, and gets no second pair). Activations int8 symmetric (zero point
  0); biases stay float (``QuantizeBias=False``): TensorRT's parser dequantizes only int8/fp8/int4
  (and fp4), so the int32 bias ``DequantizeLinear`` ONNX Runtime writes by default cannot be parsed.
* ``cpu`` -> ``model.int8-cpu.onnx``: uint8, asymmetric (zero point from the range), every
  operator ONNX Runtime has an int8 kernel for, ReLU folded into the range, int32 biases: the form
  that ONNX Runtime's CPU kernels (U8S8) run fast; weights in 7 bits (``reduce_range``) against
  the 16-bit saturation of AVX2 without VNNI.

``quant_pre_process`` (shape inference, graph optimisation) runs first, on the fp32 model.

The detector's scoring nodes (``export.scoring_graph``: ``score/...``, the distance search) are
never quantized, for either target: they stay float32 (``scoring_nodes``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgessl.export.scoring_graph import scoring_nodes

WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
INT8_MAX = 127.0


@dataclass(frozen=True)
class Target:
    name: str  # "tensorrt" | "cpu"
    key: str  # the bundle precision key
    model_file: str
    symmetric_activations: bool
    op_types: tuple[str, ...] | None  # what ONNX Runtime quantizes; None: every op it can
    inputs_only: bool  # Q/DQ on operator inputs only, a dedicated pair per consumer
    reduce_range: bool
    quantize_bias: bool  # int32 biases behind a DequantizeLinear (ONNX Runtime's default)
    residual_adds: bool  # Q/DQ on the residual input of each residual Add

    def describe(self) -> dict:
        ops = list(self.op_types) + (["Add (residual input)"] if self.residual_adds else []) if self.op_types \
            else "all ONNX Runtime int8 ops"
        return {"activations": "int8 symmetric" if self.symmetric_activations else "uint8 asymmetric",
                "weights": "int8 symmetric per-channel" + (" (7-bit range)" if self.reduce_range else ""),
                "biases": "int32 (quantized)" if self.quantize_bias else "float",
                "quantized_ops": ops,
                "placement": "operator inputs only" if self.inputs_only else "operator inputs and outputs"}


TARGETS = {
    "tensorrt": Target("tensorrt", "int8-tensorrt", "model.int8-tensorrt.onnx", True, WEIGHTED_OPS, True, False,
                       quantize_bias=False, residual_adds=True),
    "cpu": Target("cpu", "int8-cpu", "model.int8-cpu.onnx", False, None, False, True,
                  quantize_bias=True, residual_adds=False),
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


def _constants(graph: onnx.GraphProto) -> set[str]:
    return {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _ancestors(graph: onnx.GraphProto, tensor: str, constants: set[str]) -> dict[str, int]:
    """Every non-constant tensor ``tensor`` is computed from -> the fewest nodes between them (itself: 0)."""
    producer = {o: n for n in graph.node for o in n.output}
    depth, frontier = {tensor: 0}, [tensor]
    while frontier:
        nxt = []
        for t in frontier:
            for src in producer[t].input if t in producer else ():
                if src and src not in depth and src not in constants:
                    depth[src] = depth[t] + 1
                    nxt.append(src)
        frontier = nxt
    return depth


def residual_input(graph: onnx.GraphProto, add: onnx.NodeProto) -> int | None:
    """Which input of ``add`` is the residual (shortcut) one: the shorter path back to the tensor both
    branches start from (the block input itself, or one downsampling convolution); on a tie the
    second input (PyTorch's ``out += identity``). None when ``add`` is not a residual Add (a constant
    operand, or branches that share no ancestor)."""
    constants = _constants(graph)
    if len(add.input) != 2 or any(not t or t in constants for t in add.input):
        return None
    a, b = (_ancestors(graph, t, constants) for t in add.input)
    common = set(a) & set(b)
    if not common:
        return None
    start = min(common, key=lambda t: (a[t] + b[t], t))
    return 0 if a[start] < b[start] else 1


def quantize_residual_adds(model: onnx.ModelProto, ranges: dict[str, tuple[float, float]],
                           exclude: tuple[str, ...], only: tuple[str, ...] | None) -> None:
    """Put a dedicated int8 Q/DQ pair (symmetric, scale absmax/127, zero point 0) on the residual
    input of every residual Add that is quantized (not in ``exclude``; in ``only`` when given)."""
    graph = model.graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    for add in [n for n in graph.node if n.op_type == "Add"]:
        if add.name in exclude or (only is not None and add.name not in only):
            continue
        i = residual_input(graph, add)
        if i is None or producer.get(add.input[i]) == "DequantizeLinear" or add.input[i] not in ranges:
            continue  # already quantized: ONNX Runtime feeds every reader of a quantized tensor its DQ
        tensor = add.input[i]
        absmax = max(abs(ranges[tensor][0]), abs(ranges[tensor][1]))
        scale = np.array(absmax / INT8_MAX if absmax > 0 else 1.0, np.float32)
        base = f"{add.name}_residual"
        graph.initializer.extend([numpy_helper.from_array(scale, f"{base}_scale"),
                                  numpy_helper.from_array(np.array(0, np.int8), f"{base}_zero_point")])
        graph.node.extend([
            helper.make_node("QuantizeLinear", [tensor, f"{base}_scale", f"{base}_zero_point"], [f"{base}_quantized"],
                             name=f"{base}_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [f"{base}_quantized", f"{base}_scale", f"{base}_zero_point"],
                             [f"{base}_dequantized"], name=f"{base}_DequantizeLinear")])
        add.input[i] = f"{base}_dequantized"
    _sort_topologically(graph)


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Reorder ``graph.node`` so every node follows the producers of its inputs (ONNX requires it)."""
    ready = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        rest = []
        for node in pending:
            if all(t in ready for t in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError(f"the graph has a cycle or a missing input at {rest[0].name}")
        pending = rest
    del graph.node[:]
    graph.node.extend(ordered)


def quantizable_nodes(model_path: Path, target: Target) -> list[str]:
    """Names of the nodes the target quantizes (the candidates of the sensitivity analysis)."""
    ops = set(_op_types(target)) - {"Relu", "Clip", "Flatten", "Reshape", "Squeeze", "Unsqueeze", "Transpose"}
    model = onnx.load(str(model_path))
    graph, scoring = model.graph, set(scoring_nodes(model))
    return [n.name for n in graph.node if n.name and n.name not in scoring and (
        n.op_type in ops or target.residual_adds and n.op_type == "Add" and residual_input(graph, n) is not None)]


def write_qdq(pre_path: Path, ranges: dict[str, tuple[float, float]], target: Target, out_path: Path,
              exclude: tuple[str, ...] = (), only: tuple[str, ...] | None = None) -> None:
    """Write the Q/DQ model of ``pre_path`` for ``target`` with the given activation ranges.

    ``exclude``: nodes kept in float (besides the scoring nodes); ``only``: quantize just these nodes
    (sensitivity analysis).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    exclude = (*exclude, *scoring_nodes(onnx.load(str(pre_path))))
    data = {n: TensorData(lowest=np.array(lo, np.float32), highest=np.array(hi, np.float32))
            for n, (lo, hi) in ranges.items()}
    extra = {"ActivationSymmetric": target.symmetric_activations, "WeightSymmetric": True,
             "QuantizeBias": target.quantize_bias}
    if target.inputs_only:
        extra.update(OpTypesToExcludeOutputQuantization=_op_types(target), DedicatedQDQPair=True)
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
    if target.residual_adds:
        model = onnx.load(str(out_path))
        quantize_residual_adds(model, ranges, exclude, only)
        onnx.save(model, str(out_path))


def float_biases(model: onnx.ModelProto) -> list[str]:
    """The quantized weighted nodes whose bias is a float initializer (not an int32 ``DequantizeLinear``
    input); the scoring nodes, all float, are not counted."""
    floats = {i.name for i in model.graph.initializer if i.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16)}
    scoring = set(scoring_nodes(model))
    return [n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "Gemm") and len(n.input) > 2
            and n.input[2] in floats and n.name not in scoring]
