"""Activation ranges from calibration images: min/max, percentile, and histogram entropy (KL).

Every float activation (each non-constant input and output of every node) is made a graph output
and the model is run over the calibration batches with ONNX Runtime:

* pass 1: per tensor ``lo = min x``, ``hi = max x``, ``absmax = max |x|``;
* pass 2 (``percentile``/``entropy``): a histogram of ``|x|`` over ``[0, absmax]`` in ``NUM_BINS`` bins.

A method gives a clipping threshold ``T`` per tensor; the range is ``[max(lo, -T), min(hi, T)]``.

* ``minmax``: ``T = absmax``.
* ``percentile``: the smallest bin edge below which ``p``% of ``|x|`` lies.
* ``entropy`` (TensorRT's entropy calibration): for each candidate ``i`` bins (``QUANT_BINS`` ..
  ``NUM_BINS``), ``P`` = the first ``i`` bins with everything beyond folded into the last one, ``Q`` =
  those ``i`` bins merged into ``QUANT_BINS`` levels and spread back evenly over their non-empty
  bins; ``T`` = the edge of the ``i`` minimising ``KL(P || Q)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from edgessl.edge_runtime.backends.ort import cpu_session
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.export.scoring_graph import scoring_nodes

METHODS = ("minmax", "percentile", "entropy")
NUM_BINS = 2048
QUANT_BINS = 128  # int8 magnitudes 0..127
FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)


@dataclass
class TensorStats:
    lo: float
    hi: float
    hist: np.ndarray | None = None  # counts of |x| in NUM_BINS bins over [0, absmax]

    @property
    def absmax(self) -> float:
        return max(abs(self.lo), abs(self.hi))


def activation_tensors(model: onnx.ModelProto) -> list[str]:
    """The float, non-constant inputs and outputs of every node that may be quantized (what Q/DQ may
    be placed on): not the detector's scoring nodes, which stay float (``qdq``)."""
    model = onnx.shape_inference.infer_shapes(model)
    infos = {v.name: v for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    consts = {i.name for i in model.graph.initializer} | \
        {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    names: dict[str, None] = {}
    scoring = set(scoring_nodes(model))
    for node in [n for n in model.graph.node if n.name not in scoring]:
        for name in [*node.input, *node.output]:
            vi = infos.get(name)
            if name and name not in consts and vi is not None and vi.type.tensor_type.elem_type in FLOAT_TYPES:
                names[name] = None
    return list(names)


def _session(model_path: Path, names: list[str]):
    model = onnx.shape_inference.infer_shapes(onnx.load(str(model_path)))
    have = {o.name for o in model.graph.output}
    infos = {v.name: v for v in model.graph.value_info}
    for name in names:
        if name not in have:
            model.graph.output.append(infos.get(name) or helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
    return cpu_session(model.SerializeToString())


def _run(session, names: list[str], x: np.ndarray, batch_size: int):
    input_name = session.get_inputs()[0].name
    for i in range(0, len(x), batch_size):
        yield zip(names, session.run(names, {input_name: x[i : i + batch_size]}))


def collect_stats(model_path: Path, x: np.ndarray, histograms: bool, batch_size: int = 32,
                  bins: int = NUM_BINS) -> dict[str, TensorStats]:
    """Per-activation statistics of ``model_path`` over the calibration batch ``x`` (N x C x H x W)."""
    names = activation_tensors(onnx.load(str(model_path)))
    session = _session(model_path, names)
    stats: dict[str, TensorStats] = {}
    for outputs in _run(session, names, x, batch_size):
        for name, v in outputs:
            lo, hi = float(v.min()), float(v.max())
            s = stats.get(name)
            stats[name] = TensorStats(lo, hi) if s is None else TensorStats(min(s.lo, lo), max(s.hi, hi))
    if histograms:
        for s in stats.values():
            s.hist = np.zeros(bins, np.int64)
        for outputs in _run(session, names, x, batch_size):
            for name, v in outputs:
                s = stats[name]
                if s.absmax > 0:
                    idx = np.minimum((np.abs(v.ravel()) * (bins / s.absmax)).astype(np.int64), bins - 1)
                    s.hist += np.bincount(idx, minlength=bins)
    return stats


def percentile_threshold(hist: np.ndarray, absmax: float, percentile: float) -> float:
    """The upper edge of the bin where the cumulative share of ``|x|`` reaches ``percentile``%."""
    total = hist.sum()
    if total == 0 or absmax == 0:
        return absmax
    i = int(np.searchsorted(np.cumsum(hist) / total, percentile / 100.0))
    return min(absmax, (i + 1) * absmax / len(hist))


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    p = p / p.sum()
    q = q / q.sum()
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], 1e-12))))


def entropy_threshold(hist: np.ndarray, absmax: float, quant_bins: int = QUANT_BINS) -> float:
    """The clipping threshold minimising ``KL(P || Q)`` (module docstring)."""
    hist = np.asarray(hist, np.float64).copy()
    n = len(hist)
    hist[0] = hist[1]  # ignore the spike of exact zeros (module docstring)
    if absmax == 0 or hist.sum() == 0 or n <= quant_bins:
        return absmax
    tail = np.cumsum(hist[::-1])[::-1]  # tail[i] = sum(hist[i:])
    best_i, best_kl = n, np.inf
    for i in range(quant_bins, n + 1):
        ref = hist[:i]
        if ref.sum() == 0:
            continue
        p = ref.copy()
        if i < n:
            p[-1] += tail[i]
        edges = (np.arange(quant_bins + 1) * i) // quant_bins
        nonzero = ref > 0
        sums = np.add.reduceat(ref, edges[:-1])
        counts = np.add.reduceat(nonzero.astype(np.float64), edges[:-1])
        level = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        q = np.repeat(level, np.diff(edges)) * nonzero
        kl = _kl(p, q)
        if kl < best_kl:
            best_i, best_kl = i, kl
    return best_i * absmax / n


def tensor_ranges(stats: dict[str, TensorStats], method: str, percentile: float = 99.99,
                  keep_full: tuple[str, ...] = ()) -> dict[str, tuple[float, float]]:
    """``name -> (rmin, rmax)`` for a calibration method (module docstring).

    ``keep_full``: tensors never clipped (the model input: normalised pixels have an exact range,
    and clipping bright pixels of a mostly dark image only destroys them).
    """
    if method not in METHODS:
        raise EdgesslError(f"unknown calibration method {method!r}; use one of {', '.join(METHODS)}")
    if method != "minmax" and not 0 < percentile <= 100:
        raise EdgesslError(f"--percentile must be in (0, 100], got {percentile}")
    out = {}
    for name, s in stats.items():
        if method == "minmax" or s.hist is None or name in keep_full:
            t = s.absmax
        elif method == "percentile":
            t = percentile_threshold(s.hist, s.absmax, percentile)
        else:
            t = entropy_threshold(s.hist, s.absmax)
        out[name] = (max(s.lo, -t), min(s.hi, t))
    return out
