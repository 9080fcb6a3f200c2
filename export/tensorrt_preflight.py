"""Would TensorRT's ONNX parser take this model? A static check, with ``onnx`` alone, for where
TensorRT cannot run (every machine here) and before ``build-engine`` starts where it can.

Two rule sets, one per TensorRT line a bundle targets:

* ``10``: TensorRT 10.3 (JetPack 6.1/6.2), the oldest 10.x edgessl builds with, so the strictest.
  The op table is onnx-tensorrt ``docs/operators.md`` at branch 10.1-GA (its header still says
  10.0: "opset 9 to opset 20"), with the parser changelog's 10.2 and 10.3 changes (``Slice`` takes
  tensor ``axes`` from 10.3; ``Pad`` from 10.4 and ``Squeeze``/``Unsqueeze`` from 10.7 do not).
* ``11``: TensorRT 11.x (JetPack 7). NVIDIA's 11.x operators.md could not be retrieved; the op table
  is the newest text that could, onnx-tensorrt ``operators.md`` for TensorRT 10.15 (opset 9-24,
  FP4 added), plus the 11.0 changelog's ``Swish``; the opset ceiling 25 is NVIDIA's "ONNX Opset
  Guide" for 11.x.

The rules (``RULES``; each finding names one):

* R1 opset: the default-domain opset is inside the documented range (10: 9-20; 11: 9-25). The parser
  only warns outside it; the range is the only contract.
* R2 op: every op is in the version's support table with "Y"; ops of another domain
  (``com.microsoft``: ONNX Runtime's contrib Q/DQ, QLinear* and *Integer ops) are not ONNX ops to
  TensorRT. Source: operators.md (both versions).
* R3 types: a node's data input (input 0) has one of the op's "Supported Types" (operators.md;
  DOUBLE counts as float: "TensorRT will attempt to cast DOUBLE down to FLOAT"); Conv, ConvTranspose,
  Gemm and MatMul take float inputs only; no UINT8 tensor except a graph input or output
  ("UINT8 is only supported as network input or output tensor types"; onnx-tensorrt 10.1
  ``ModelImporter.cpp`` refuses UINT8 intermediates).
* R4 dequantize: ``DequantizeLinear``'s input is INT8, FP8 or INT4 (11 and 10.8+: FP4 too), never the
  INT32 of a quantized bias (operators.md "Supported Types"; onnx-tensorrt ``QuantDequantLinearHelper``:
  "TensorRT only allows FP8, INT8, and INT4 quantization"; onnx/onnx-tensorrt#850).
* R5 zero point: absent or all zeros, of a quantized type (not UINT8), one per scale
  ("`x_zero_point` must be zero", "`y_zero_point` must be 0"; ``QuantDequantLinearHelper``:
  "TensorRT only supports symmetric quantization"; UINT8 refused; NvInfer.h 10.3 IQuantizeLayer).
* R6 scale: a constant (initializer or ``Constant``), every value finite and > 0; one value
  (per-tensor) or a 1-D vector (per-channel) whose length is the input's size on ``axis``
  (``QuantDequantLinearHelper``; NvInfer.h 10.3: "The subgraph which terminates with the scale
  tensor must be a build-time constant"). Block scales (input rank) only for INT4 on 10.3.
* R7 per-channel: only on constants (weights): "Activations cannot be quantized per-channel"
  (NvInfer.h 10.3); ``axis`` written out, since the parser reads a missing ``axis`` as 0 where ONNX
  means 1 (``QuantDequantLinearHelper``); per-channel ``axis`` needs opset 13 (ONNX operator spec).
* R8 constant inputs (operators.md restrictions): ``Reduce*`` ``axes``, ``TopK`` ``K`` (< 3840,
  ``sorted`` = 1), ``CumSum`` ``axis``; on 10: ``Pad`` ``axes`` and ``Squeeze``/``Unsqueeze`` ``axes``.
* R9 attributes (operators.md restrictions): pools 2-D or 3-D with ``dilations`` all 1 and no
  ``MaxPool`` ``Indices``; ``Resize`` modes (coordinate modes half_pixel, pytorch_half_pixel,
  tf_half_pixel_for_nn, asymmetric, align_corners; nearest/linear; no antialias); ``Constant``
  without ``sparse_value``/``value_string(s)``.
* R10 dynamic dimensions: every dynamic dimension of a graph input is set by the optimization
  profile the builder uses (``build-engine``: the batch from 1 to ``--max-batch``, the other
  dimensions from the manifest); a profile's shapes have the input's rank, its static dimensions,
  and min <= opt <= max (TensorRT: "Network has dynamic or shape inputs, but no optimization
  profile has been defined"; IOptimizationProfile.set_shape).

``preflight`` raises one line naming the first node and its rule (and how many more there are);
``check_model`` returns every finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgessl.edge_runtime.engines import Profile, engine_profile
from edgessl.edge_runtime.errors import EdgesslError

from .config import TENSORRT_LINES

ONNX_HINT = "the TensorRT preflight reads models with the onnx package: pip install 'edgessl[gpu]' (or onnx)"

RULES = {
    "R1": "opset inside the documented range",
    "R2": "op supported by TensorRT's ONNX parser",
    "R3": "input types the op supports; no UINT8 inside the network",
    "R4": "DequantizeLinear input INT8/FP8/INT4(/FP4)",
    "R5": "Q/DQ zero point absent or zero, of a quantized type",
    "R6": "Q/DQ scale constant, positive, per-tensor or per-channel",
    "R7": "per-channel Q/DQ only on weights, with an explicit axis",
    "R8": "inputs TensorRT needs as constants",
    "R9": "attributes TensorRT supports",
    "R10": "dynamic dimensions set by the optimization profile",
}

# The "Supported Types" column's spellings -> ONNX TensorProto type names.
_TYPES = {"FP32": ("FLOAT", "DOUBLE"), "FP16": ("FLOAT16",), "BF16": ("BFLOAT16",), "INT32": ("INT32",),
          "INT64": ("INT64",), "INT8": ("INT8",), "UINT8": ("UINT8",), "BOOL": ("BOOL",),
          "FP8": ("FLOAT8E4M3FN",), "INT4": ("INT4",), "FP4": ("FLOAT4E2M1",)}


def _types(spec: str) -> frozenset[str]:
    return frozenset(t for word in spec.split() for t in _TYPES[word])


def _table(groups: dict[str, str]) -> dict[str, frozenset[str]]:
    return {op: _types(types) for types, ops in groups.items() for op in ops.split()}


_F = "FP32 FP16 BF16"
_FI = _F + " INT32 INT64"
_FIB = _FI + " BOOL"
# onnx-tensorrt docs/operators.md, branch 10.1-GA: the ops marked Y, by their Supported Types.
OPS_10 = _table({
    _FI: "Abs Add ArgMax ArgMin DepthToSpace Div Equal Greater GreaterOrEqual IsNaN Less LessOrEqual Max Min Mod "
         "Mul Neg Pad Range ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd "
         "ReduceSum ReduceSumSquare Relu Scatter ScatterElements ScatterND Shrink Sign SpaceToDepth Sub Sum TopK",
    _F: "Acos Acosh Asin Asinh Atan Atanh AveragePool BatchNormalization Ceil Celu Clip Conv ConvTranspose Cos Cosh "
        "CumSum Dropout Einsum Elu Erf Exp Floor Gemm GlobalAveragePool GlobalLpPool GlobalMaxPool GroupNormalization "
        "GRU HardSigmoid HardSwish Hardmax ImageScaler InstanceNormalization IsInf LayerNormalization LeakyRelu Log "
        "LogSoftmax LRN LSTM LpNormalization LpPool MatMul MaxPool MeanVarianceNormalization ParametricSoftplus Pow "
        "PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Reciprocal Resize RNN "
        "Round ScaledTanh Scan Selu Sigmoid Sin Sinh Softmax Softplus Softsign Sqrt Tan Tanh ThresholdedRelu Upsample",
    "BOOL": "And Not Or Xor",
    _FIB + " UINT8": "Cast CastLike",
    _FIB: "Concat Constant ConstantOfShape Expand EyeLike Flatten Gather GatherElements GatherND Identity If Loop "
          "OneHot Reshape ReverseSequence Shape Size Slice Split Squeeze Tile Transpose Trilu Unsqueeze Where",
    "FP32 FP16": "DeformConv GridSample Mish NonMaxSuppression NonZero RoiAlign",
    "INT8 FP8 INT4": "DequantizeLinear",
    _F + " INT8 INT32 INT64": "Gelu",
    _F + " FP8 INT32 INT64": "Mean",
})
# onnx-tensorrt docs/operators.md for TensorRT 10.15, and Swish from the TensorRT 11.0 changelog.
OPS_11 = {**OPS_10, **_table({
    _F + " INT8 FP8": "Attention",
    "FP32 FP16": "BlackmanWindow HammingWindow HannWindow",
    "FP32": "STFT",
    _F: "RMSNormalization RotaryEmbedding Swish",
    _FI: "Pow",
    _F + " INT32": "TensorScatter",
    _FIB + " FP8 FP4 INT4": "Constant ConstantOfShape",
    "INT8 FP8 FP4 INT4": "DequantizeLinear",
})}

RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}
RESIZE_MODES = {"nearest", "linear"}
WEIGHTED = ("Conv", "ConvTranspose", "Gemm", "MatMul")
POOLS = ("AveragePool", "MaxPool", "LpPool")
REDUCE = tuple(f"Reduce{k}" for k in ("L1", "L2", "LogSum", "LogSumExp", "Max", "Mean", "Min", "Prod", "Sum",
                                      "SumSquare"))
TOPK_MAX = 3840


@dataclass(frozen=True)
class RuleSet:
    """What one TensorRT line's parser accepts (module docstring)."""

    name: str  # "10" | "11"
    label: str
    max_opset: int
    ops: dict[str, frozenset[str]]
    constant_axes: tuple[str, ...]  # ops whose ``axes`` input must be a constant (R8)
    block_types: frozenset[str]  # quantized types block (input-rank) scales are allowed for (R6)


RULESETS = {
    "10": RuleSet("10", "TensorRT 10.3", 20, OPS_10, ("Pad", "Squeeze", "Unsqueeze", *REDUCE), _types("INT4")),
    "11": RuleSet("11", "TensorRT 11", 25, OPS_11, REDUCE, _types("FP8 INT4 FP4")),
}


def ruleset_for(version: str) -> RuleSet:
    """The rule set of an installed TensorRT version (``10.3.0.30`` -> ``10``)."""
    major = str(version).split(".")[0]
    if major not in RULESETS:
        raise EdgesslError(f"TensorRT {version}: edgessl builds engines with TensorRT 10 or 11")
    return RULESETS[major]


@dataclass
class Finding:
    """One rule a node (or a graph input) breaks, on the TensorRT lines listed in ``versions``."""

    where: str  # "node '<name>' (<op>)" or "input '<name>'" or "model"
    rule: str
    message: str
    versions: list[str] = field(default_factory=list)

    def line(self) -> str:
        return f"{self.where}: {self.message} [{self.rule}: {RULES[self.rule]}; {', '.join(self.versions)}]"

    def to_dict(self) -> dict:
        return {"where": self.where, "rule": self.rule, "message": self.message, "tensorrt": self.versions}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise EdgesslError(ONNX_HINT) from None
    return onnx


class _Graph:
    """The facts the rules read: types, shapes and constant values of a model's tensors."""

    def __init__(self, model):
        onnx = _onnx()
        from onnx import numpy_helper

        try:
            model = onnx.shape_inference.infer_shapes(model)
        except onnx.shape_inference.InferenceError:  # a graph ONNX cannot type: check what it declares
            pass
        self.model, self.graph = model, model.graph
        self.consts = {i.name: numpy_helper.to_array(i) for i in self.graph.initializer}
        for n in self.graph.node:
            value = next((a for a in n.attribute if a.name == "value"), None)
            if n.op_type == "Constant" and value is not None:
                self.consts[n.output[0]] = numpy_helper.to_array(value.t)
        infos = [*self.graph.value_info, *self.graph.input, *self.graph.output]
        self.types = {v.name: onnx.TensorProto.DataType.Name(v.type.tensor_type.elem_type) for v in infos
                      if v.type.tensor_type.elem_type}
        self.types.update({i.name: onnx.TensorProto.DataType.Name(i.data_type) for i in self.graph.initializer})
        self.shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
                       for v in infos if v.type.tensor_type.HasField("shape")}
        self.shapes.update({k: list(v.shape) for k, v in self.consts.items()})
        self.boundary = {v.name for v in [*self.graph.input, *self.graph.output]}

    def opset(self) -> int:
        return max((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), default=0)


def _attr(node, name: str, default=None):
    from onnx import helper

    a = next((a for a in node.attribute if a.name == name), None)
    return default if a is None else helper.get_attribute_value(a)


def _where(node, index: int) -> str:
    return f"node '{node.name or f'#{index} -> {node.output[0]}'}' ({node.op_type})"


def _qdq(g: _Graph, node, rs: RuleSet, opset: int) -> list[tuple[str, str]]:
    """R4-R7 for one QuantizeLinear/DequantizeLinear."""
    out: list[tuple[str, str]] = []
    x, scale_name = node.input[0], node.input[1] if len(node.input) > 1 else ""
    zp_name = node.input[2] if len(node.input) > 2 else ""
    quantized = rs.ops["DequantizeLinear"]
    if node.op_type == "DequantizeLinear" and g.types.get(x) and g.types[x] not in quantized:
        hint = " (a quantized bias: keep biases float, QuantizeBias=False)" if g.types[x] == "INT32" else ""
        out.append(("R4", f"input '{x}' is {g.types[x]}; TensorRT dequantizes only INT8, FP8, INT4 (and FP4 "
                          f"from 10.8){hint}"))
    if zp_name:
        zp_type = g.types.get(zp_name)
        if zp_type and zp_type not in quantized:
            out.append(("R5", f"zero point '{zp_name}' is {zp_type}, not a quantized type (INT8, FP8, INT4)"))
        zp = g.consts.get(zp_name)
        if zp is None:
            out.append(("R5", f"zero point '{zp_name}' is not a constant"))
        elif np.any(zp.astype(np.float64) != 0):
            out.append(("R5", f"zero point '{zp_name}' is not zero: TensorRT quantizes symmetrically only"))
    scale = g.consts.get(scale_name)
    if scale is None:
        return out + [("R6", f"scale '{scale_name}' is not a constant (an initializer or a Constant)")]
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        out.append(("R6", f"scale '{scale_name}' has a value that is not finite and > 0"))
    zp = g.consts.get(zp_name) if zp_name else None
    if zp is not None and zp.size != scale.size:
        out.append(("R5", f"zero point '{zp_name}' has {zp.size} values for {scale.size} scales"))
    if scale.size == 1:
        return out
    shape = g.shapes.get(x)
    if shape is not None and scale.ndim == len(shape) and scale.ndim > 1:
        if g.types.get(node.output[0] if node.op_type == "QuantizeLinear" else x) not in rs.block_types:
            out.append(("R6", f"block-quantized scale '{scale_name}' on a type {rs.label} does not block-quantize"))
        return out
    if scale.ndim != 1:
        return out + [("R6", f"scale '{scale_name}' has shape {list(scale.shape)}: neither per-tensor nor per-channel")]
    if x not in g.consts:
        out.append(("R7", f"per-channel scale on '{x}', which is not a constant: activations cannot be quantized "
                          "per-channel"))
    axis = _attr(node, "axis")
    if axis is None:
        out.append(("R7", "per-channel without an explicit axis: the parser reads it as 0, ONNX as 1"))
    elif shape is not None and -len(shape) <= axis < len(shape) and shape[axis] not in (None, scale.size):
        out.append(("R7", f"{scale.size} scales for {shape[axis]} channels on axis {axis} of '{x}'"))
    if opset < 13:
        out.append(("R7", f"per-channel Q/DQ needs opset 13 or newer (this model: {opset})"))
    return out


def _node(g: _Graph, node, rs: RuleSet, opset: int) -> list[tuple[str, str]]:
    """R2-R9 for one node."""
    if node.domain not in ("", "ai.onnx"):
        return [("R2", f"op of domain '{node.domain}' (not an ONNX op to TensorRT; ONNX Runtime's contrib ops "
                       "are not parsed)")]
    if node.op_type not in rs.ops:
        return [("R2", f"{node.op_type} is not supported by the ONNX parser")]
    out: list[tuple[str, str]] = []
    first = node.input[0] if node.input else ""
    if node.op_type != "DequantizeLinear" and first and g.types.get(first) and g.types[first] not in rs.ops[node.op_type]:
        out.append(("R3", f"input '{first}' is {g.types[first]}; {node.op_type} takes "
                          f"{', '.join(sorted(rs.ops[node.op_type]))}"))
    if node.op_type in WEIGHTED:
        bad = [t for t in node.input[1:] if t and g.types.get(t) and g.types[t] not in _types(_F)]
        out += [("R3", f"input '{t}' is {g.types[t]}; {node.op_type} takes float inputs only") for t in bad]
    for t in node.output:
        if t and g.types.get(t) == "UINT8" and t not in g.boundary:
            out.append(("R3", f"output '{t}' is UINT8: only graph inputs and outputs may be UINT8"))
    if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
        out += _qdq(g, node, rs, opset)
    axes = node.input[1] if len(node.input) > 1 and node.op_type in (*REDUCE, "Squeeze", "Unsqueeze") else \
        node.input[3] if len(node.input) > 3 and node.op_type == "Pad" else ""
    if node.op_type in rs.constant_axes and axes and axes not in g.consts:
        out.append(("R8", f"'axes' input '{axes}' must be a constant"))
    if node.op_type == "CumSum" and node.input[1] not in g.consts:
        out.append(("R8", "'axis' must be a constant"))
    if node.op_type == "TopK":
        k = g.consts.get(node.input[1]) if len(node.input) > 1 else _attr(node, "k")
        if k is None or int(np.asarray(k).ravel()[0]) >= TOPK_MAX:
            out.append(("R8", f"K must be a constant below {TOPK_MAX}"))
        if _attr(node, "sorted", 1) != 1:
            out.append(("R9", "'sorted' must be 1"))
    out += _attributes(node)
    return out


def _attributes(node) -> list[tuple[str, str]]:
    """R9."""
    out = []
    if node.op_type in POOLS:
        kernel = _attr(node, "kernel_shape", [])
        if len(kernel) not in (2, 3):
            out.append(("R9", f"{len(kernel)}-D pooling: TensorRT pools 2-D or 3-D only"))
        if any(d != 1 for d in _attr(node, "dilations", [])):
            out.append(("R9", "'dilations' must be empty or all ones"))
    if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
        out.append(("R9", "the 'Indices' output is not supported"))
    if node.op_type == "Resize":
        coords = _attr(node, "coordinate_transformation_mode", b"half_pixel").decode()
        mode = _attr(node, "mode", b"nearest").decode()
        if coords not in RESIZE_COORDINATES:
            out.append(("R9", f"coordinate_transformation_mode '{coords}' is not supported"))
        if mode not in RESIZE_MODES:
            out.append(("R9", f"mode '{mode}' is not supported (nearest, linear)"))
        if _attr(node, "antialias", 0):
            out.append(("R9", "antialiasing is not supported"))
    if node.op_type == "Constant" and any(a.name in ("sparse_value", "value_string", "value_strings")
                                          for a in node.attribute):
        out.append(("R9", "sparse and string constants are not supported"))
    return out


def _inputs(g: _Graph, profile: Profile) -> list[tuple[str, str, str]]:
    """R10: (input name, rule, message) for every dynamic dimension the profile does not set."""
    out = []
    inits = set(g.consts)
    for v in g.graph.input:
        if v.name in inits:
            continue
        dims = v.type.tensor_type.shape.dim
        dynamic = [i for i, d in enumerate(dims) if not d.HasField("dim_value") or d.dim_value <= 0]
        shapes = profile.get(v.name)
        if shapes is None:
            if dynamic:
                i = dynamic[0]
                out.append((v.name, "R10", f"dimension {i} ('{dims[i].dim_param or '?'}') is dynamic and no "
                                           "optimization profile sets it"))
            continue
        lo, opt, hi = (tuple(s) for s in shapes)
        if any(len(s) != len(dims) for s in (lo, opt, hi)):
            out.append((v.name, "R10", f"the profile's shapes {list(lo)}..{list(hi)} do not have the input's rank "
                                       f"{len(dims)}"))
            continue
        for i, d in enumerate(dims):
            if i not in dynamic and not lo[i] == opt[i] == hi[i] == d.dim_value:
                out.append((v.name, "R10", f"dimension {i} is {d.dim_value} but the profile gives "
                                           f"{lo[i]}/{opt[i]}/{hi[i]}"))
            elif not 1 <= lo[i] <= opt[i] <= hi[i]:
                out.append((v.name, "R10", f"dimension {i}: the profile needs 1 <= min <= opt <= max, got "
                                           f"{lo[i]}/{opt[i]}/{hi[i]}"))
    return out


def check_model(model, versions: tuple[str, ...] = TENSORRT_LINES, profile: Profile | None = None) -> list[Finding]:
    """Every rule ``model`` (an ``onnx.ModelProto``) breaks on the TensorRT lines ``versions``, in
    graph order; one finding per node and rule, listing the lines it fails on."""
    g = _Graph(model)
    opset = g.opset()
    found: dict[tuple[str, str, str], Finding] = {}

    def add(where: str, rule: str, message: str, version: str) -> None:
        found.setdefault((where, rule, message), Finding(where, rule, message)).versions.append(version)

    for name in versions:
        rs = RULESETS[name]
        if not 9 <= opset <= rs.max_opset:
            add("model", "R1", f"opset {opset} is outside the documented 9-{rs.max_opset}", rs.label)
        for i, node in enumerate(g.graph.node):
            for rule, message in _node(g, node, rs, opset):
                add(_where(node, i), rule, message, rs.label)
        for input_name, rule, message in _inputs(g, profile or {}):
            add(f"input '{input_name}'", rule, message, rs.label)
    return list(found.values())


def check_file(model: Path | bytes, versions: tuple[str, ...] = TENSORRT_LINES,
               profile: Profile | None = None) -> list[Finding]:
    """``check_model`` of an ONNX file, or of its bytes."""
    onnx = _onnx()
    proto = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(str(model),
                                                                                          load_external_data=False)
    return check_model(proto, versions, profile)


def preflight(model: Path | bytes, versions: tuple[str, ...] = TENSORRT_LINES, profile: Profile | None = None,
              name: str = "") -> None:
    """Refuse (one line: the first node and its rule, and how many more) a model TensorRT would not
    parse (a file, or its bytes called ``name``)."""
    findings = check_file(model, versions, profile)
    if findings:
        more = f" (and {len(findings) - 1} more: `edgessl bundle check --json` lists them)" if len(findings) > 1 else ""
        raise EdgesslError(f"{name or Path(model).name} would not parse in TensorRT: {findings[0].line()}{more}")


TENSORRT_MODELS = ("fp32", "int8-tensorrt")  # the bundle precisions engines are built from


def check_bundle(bundle, versions: tuple[str, ...], batches: tuple[int, int, int]) -> dict[str, list[Finding]]:
    """Each model of ``bundle`` that engines are built from (``TENSORRT_MODELS``) -> its findings."""
    profile = engine_profile(bundle.manifest, batches)
    return {bundle.model_name(key): check_file(bundle.model_bytes(key), versions, profile)
            for key in TENSORRT_MODELS if key in bundle.manifest.get("precisions", {})}
