"""The detector's scoring as ONNX nodes after the network: the exported graph outputs the score.

``append_scoring(model, detector)`` adds ``anomaly_score`` ``(N,)`` and, for a detector with maps,
``anomaly_map`` ``(N, h, w)`` to a model whose outputs are ``embedding`` ``(N, D)`` and/or
``patches`` ``(N, C, h, w)``, computing in float32 what the numpy detectors
(``edge_runtime.detectors``, the reference the export is verified against) compute:

* gaussian: ``raw = ||(x - mu) L||`` with ``L = V sqrt(E)`` from the precision's eigendecomposition
  ``P = V E V^T``, so ``||(x - mu) L||^2 = (x - mu)^T P (x - mu)``: one MatMul and a sum of squares,
  never negative (eigenvalues below 0, rounding only, count as 0 as numpy's ``max(., 0)`` does).
* nearest neighbours (``neighbours.nearest``): the ``k`` candidates of each query ``q`` are the
  smallest ``|b|^2 - 2 q.b`` over the bank (one Gemm, ``TopK``); their squared distances are then
  recomputed exactly as ``sum((q - b_j)^2)`` over the gathered rows, so small distances keep their
  precision. knn: ``raw = mean_j sq_j / 2`` on L2-normalised embeddings (``1 - cos``); patch:
  ``map = mean_j sqrt(sq_j)`` per location, ``raw`` = the mean of the map's ``top`` largest values.
* combined: ``z_i = (raw_i - m_i) / s_i``, ``raw = mean_i z_i``, ``map = raw + (z_map - max z_map) / n``.

The bank (and the Gaussian's mean and factor) are initializers: the model file carries them and
the manifest's sha256 of it seals them. Every node added is named ``score/...``
(``SCORING_PREFIX``): calibration keeps those nodes in float32 (``scoring_nodes``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgessl.edge_runtime.detectors import (CombinedDetector, Detector, GaussianDetector, KnnDetector,
                                            PatchDetector)
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.graph_scores import MAP_OUTPUT, SCORE_OUTPUT

SCORING_PREFIX = "score/"
SCORING_RECORD = {  # manifest["model"]["scoring"]: what the graph's scoring is
    "in_graph": True, "nodes": f"{SCORING_PREFIX}*", "precision": "float32 (kept out of INT8 quantization)",
    "bank": "initializers of the model file", "reference": "edge_runtime.detectors (numpy), verified at export"}
NORM_EPS = 1e-12  # neighbours.l2_normalise's floor on the norm


@dataclass
class _Builder:
    """Nodes and initializers appended under one name scope, reductions written for ``opset``."""

    opset: int
    scope: str = SCORING_PREFIX
    nodes: list = field(default_factory=list)
    initializers: list = field(default_factory=list)

    def name(self, what: str) -> str:
        return f"{self.scope}{what}_{len(self.nodes) + len(self.initializers)}"

    def const(self, array: np.ndarray, what: str = "const") -> str:
        name = self.name(what)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, **attrs) -> str | list[str]:
        """One node; its output name (or names, for ``outputs > 1``)."""
        name = self.name(op_type)
        names = [f"{name}:{i}" for i in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=name, **attrs))
        return names[0] if outputs == 1 else names

    def reduce(self, op_type: str, x: str, axis: int, keepdims: bool = False) -> str:
        """A ``Reduce*`` op over one axis: ``axes`` an input from opset 18, else an attribute."""
        if self.opset >= 18:
            return self.op(op_type, [x, self.const(np.array([axis], np.int64), "axes")], keepdims=int(keepdims))
        return self.op(op_type, [x], axes=[axis], keepdims=int(keepdims))

    def scalar(self, value: float) -> str:
        return self.const(np.array(value, np.float32), "scalar")


def _nearest_sq(g: _Builder, queries: str, bank: np.ndarray, k: int) -> str:
    """``(Q, k)`` squared distances of each ``(Q, C)`` query row to its ``k`` nearest bank rows."""
    bank = np.asarray(bank, np.float32)
    k = max(1, min(k, len(bank)))
    approx = g.op("Gemm", [queries, g.const(np.ascontiguousarray(bank.T), "bank_t"),
                           g.const(np.einsum("ij,ij->i", bank, bank), "bank_sq")], alpha=-2.0, beta=1.0)
    _, index = g.op("TopK", [approx, g.const(np.array([k], np.int64), "k")], outputs=2, axis=1, largest=0, sorted=1)
    rows = g.op("Gather", [g.const(bank, "bank"), index], axis=0)  # (Q, k, C)
    diff = g.op("Sub", [rows, g.op("Unsqueeze", [queries, g.const(np.array([1], np.int64), "axes")])])
    return g.reduce("ReduceSumSquare", diff, 2)


def _gaussian(g: _Builder, outputs: dict[str, str], det: GaussianDetector) -> tuple[str, None]:
    values, vectors = np.linalg.eigh(det.precision)
    factor = (vectors * np.sqrt(np.maximum(values, 0.0))).astype(np.float32)
    centred = g.op("Sub", [outputs["embedding"], g.const(det.mean.astype(np.float32), "mean")])
    projected = g.op("MatMul", [centred, g.const(factor, "factor")])
    return g.op("Sqrt", [g.reduce("ReduceSumSquare", projected, 1)]), None


def _knn(g: _Builder, outputs: dict[str, str], det: KnnDetector) -> tuple[str, None]:
    x = outputs["embedding"]
    norm = g.op("Max", [g.op("Sqrt", [g.reduce("ReduceSumSquare", x, 1, keepdims=True)]), g.scalar(NORM_EPS)])
    sq = _nearest_sq(g, g.op("Div", [x, norm]), det.bank, det.k)
    return g.op("Mul", [g.reduce("ReduceMean", sq, 1), g.scalar(0.5)]), None


def _patch(g: _Builder, outputs: dict[str, str], det: PatchDetector, shape: tuple[int, int]) -> tuple[str, str]:
    h, w = shape
    channels = det.bank.shape[1]
    rows = g.op("Reshape", [g.op("Transpose", [outputs["patches"]], perm=[0, 2, 3, 1]),
                            g.const(np.array([-1, channels], np.int64), "shape")])
    dist = g.reduce("ReduceMean", g.op("Sqrt", [_nearest_sq(g, rows, det.bank, det.k)]), 1)
    amap = g.op("Reshape", [dist, g.const(np.array([-1, h, w], np.int64), "shape")])
    flat = g.op("Reshape", [dist, g.const(np.array([-1, h * w], np.int64), "shape")])
    top = det.locations_scored(h * w)
    if top < h * w:  # the whole map needs no TopK (TensorRT refuses K >= tensorrt_preflight.TOPK_MAX)
        flat, _ = g.op("TopK", [flat, g.const(np.array([top], np.int64), "k")], outputs=2, axis=1, largest=1, sorted=1)
    return g.reduce("ReduceMean", flat, 1), amap


def _combined(g: _Builder, outputs: dict[str, str], det: CombinedDetector,
              shape: tuple[int, int] | None) -> tuple[str, str]:
    z, z_map = [], None
    for i, (part, median, scale) in enumerate(zip(det.parts, det.medians, det.scales)):
        part_g = _Builder(g.opset, f"{g.scope}{i}.{part.kind}/", g.nodes, g.initializers)
        raw, amap = _score(part_g, outputs, part, shape)
        standardise = [g.scalar(median), g.scalar(1.0 / scale)]
        z.append(g.op("Mul", [g.op("Sub", [raw, standardise[0]]), standardise[1]]))
        if amap is not None:
            z_map = g.op("Mul", [g.op("Sub", [amap, standardise[0]]), standardise[1]])
    share = g.scalar(1.0 / len(z))
    raw = g.op("Mul", [g.op("Sum", z), share])
    peak = g.reduce("ReduceMax", g.reduce("ReduceMax", z_map, 2), 1)
    offset = g.op("Sub", [raw, g.op("Mul", [peak, share])])  # raw - max z_map / n, per image
    per_image = g.op("Unsqueeze", [offset, g.const(np.array([1, 2], np.int64), "axes")])
    amap = g.op("Add", [g.op("Mul", [z_map, share]), per_image])
    return raw, amap


def _score(g: _Builder, outputs: dict[str, str], det: Detector,
           shape: tuple[int, int] | None) -> tuple[str, str | None]:
    """The detector's raw score (and map) tensors from the feature tensors ``outputs``."""
    if isinstance(det, GaussianDetector):
        return _gaussian(g, outputs, det)
    if isinstance(det, KnnDetector):
        return _knn(g, outputs, det)
    if isinstance(det, PatchDetector):
        return _patch(g, outputs, det, shape)
    if isinstance(det, CombinedDetector):
        return _combined(g, outputs, det, shape)
    raise EdgesslError(f"no in-graph scoring for the {det.kind} detector")


def _map_shape(model: onnx.ModelProto) -> tuple[int, int] | None:
    """The ``(h, w)`` of the model's ``patches`` output (fixed at export), or None without one."""
    info = next((o for o in model.graph.output if o.name == "patches"), None)
    if info is None:
        return None
    dims = [d.dim_value for d in info.type.tensor_type.shape.dim][2:]
    if len(dims) != 2 or min(dims) <= 0:
        raise EdgesslError("the model's 'patches' output needs a fixed height and width for in-graph scoring")
    return dims[0], dims[1]


def opset_of(model: onnx.ModelProto) -> int:
    return max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def append_scoring(model: onnx.ModelProto, detector: Detector) -> onnx.ModelProto:
    """A copy of ``model`` with the detector's ``anomaly_score`` (and ``anomaly_map``) as outputs."""
    missing = [n for n in detector.inputs if n not in {o.name for o in model.graph.output}]
    if missing:
        raise EdgesslError(f"the {detector.kind} detector needs the model output(s) {missing}")
    out = onnx.ModelProto()
    out.CopyFrom(model)
    shape = _map_shape(model)
    g = _Builder(opset_of(model))
    raw, amap = _score(g, {n: n for n in detector.inputs}, detector, shape)
    g.nodes.append(helper.make_node("Identity", [raw], [SCORE_OUTPUT], name=f"{SCORING_PREFIX}{SCORE_OUTPUT}"))
    out.graph.output.append(helper.make_tensor_value_info(SCORE_OUTPUT, TensorProto.FLOAT, ["batch"]))
    if amap is not None:
        g.nodes.append(helper.make_node("Identity", [amap], [MAP_OUTPUT], name=f"{SCORING_PREFIX}{MAP_OUTPUT}"))
        out.graph.output.append(helper.make_tensor_value_info(MAP_OUTPUT, TensorProto.FLOAT, ["batch", *shape]))
    out.graph.node.extend(g.nodes)
    out.graph.initializer.extend(g.initializers)
    onnx.checker.check_model(out)
    return out


def scoring_nodes(model: onnx.ModelProto) -> list[str]:
    """The names of the scoring nodes (``SCORING_PREFIX``), which INT8 quantization leaves in float."""
    return [n.name for n in model.graph.node if n.name.startswith(SCORING_PREFIX)]


def add_scoring(path: Path, detector: Detector) -> dict[str, list]:
    """Append the detector's scoring to the ONNX file ``path`` in place; returns the outputs it adds
    with their manifest shapes (``["batch"]``, ``["batch", h, w]``)."""
    model = append_scoring(onnx.load(str(path)), detector)
    onnx.save(model, str(path))
    shape = _map_shape(model)
    return {SCORE_OUTPUT: ["batch"], **({MAP_OUTPUT: ["batch", *shape]} if detector.has_maps else {})}
