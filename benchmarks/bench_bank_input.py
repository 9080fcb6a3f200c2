"""The patch search in the graph: its memory bank as initializers or as graph inputs, and its cost by bank size.

    .venv/bin/python benchmarks/bench_bank_input.py [--banks 2048] [--channels 128] [--grids 8,28]
        [--iterations 200]

A pass-through model (``patches`` in, ``patches`` out) gets the patch detector's scoring
(``export.scoring_graph``) with a random bank of each size of ``--banks``; the same model is then
given its bank constants (the bank, its transpose and squared norms) as graph inputs, fed on every
call. ONNX Runtime, CPU, one thread, batch 1: p50 of each per location grid (8 x 8: a 64 px model;
28 x 28: 224 px). The search alone: with ``bench_graph_scoring.py``'s ``network`` time it says at
which bank size the patch detector doubles the network's time.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from edgessl.edge_runtime.detectors import PatchDetector
from edgessl.export.scoring_graph import SCORING_PREFIX, append_scoring


def passthrough(channels: int, grid: int) -> onnx.ModelProto:
    info = helper.make_tensor_value_info("patches_in", TensorProto.FLOAT, ["batch", channels, grid, grid])
    out = helper.make_tensor_value_info("patches", TensorProto.FLOAT, ["batch", channels, grid, grid])
    graph = helper.make_graph([helper.make_node("Identity", ["patches_in"], ["patches"])], "features", [info], [out])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def bank_as_inputs(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, np.ndarray]]:
    """``model`` with its bank constants moved to graph inputs, and the arrays to feed them."""
    moved = onnx.ModelProto()
    moved.CopyFrom(model)
    banks = [i for i in moved.graph.initializer if i.name.startswith(f"{SCORING_PREFIX}bank")]
    feeds = {i.name: numpy_helper.to_array(i) for i in banks}
    for i in banks:
        moved.graph.input.append(helper.make_tensor_value_info(i.name, TensorProto.FLOAT, list(i.dims)))
        moved.graph.initializer.remove(i)
    return moved, feeds


def p50_ms(model: onnx.ModelProto, feeds: dict[str, np.ndarray], iterations: int) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    for _ in range(10):
        session.run(None, feeds)
    times = []
    for _ in range(iterations):
        t0 = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--banks", default="2048", help="bank sizes (rows; fit's default coreset: 2048)")
    ap.add_argument("--channels", type=int, default=128, help="patch feature size (FeatureModel's PATCH_DIM)")
    ap.add_argument("--grids", default="8,28")
    ap.add_argument("--iterations", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.RandomState(0)
    print(f"patch search, {args.channels} channels, ONNX Runtime CPU, 1 thread, batch 1, p50 ms")
    for size in [int(b) for b in args.banks.split(",")]:
        detector = PatchDetector(rng.randn(size, args.channels).astype(np.float32))
        for grid in [int(g) for g in args.grids.split(",")]:
            model = append_scoring(passthrough(args.channels, grid), detector)
            x = {"patches_in": rng.randn(1, args.channels, grid, grid).astype(np.float32)}
            inputs, banks = bank_as_inputs(model)
            a, b = p50_ms(model, x, args.iterations), p50_ms(inputs, {**x, **banks}, args.iterations)
            print(f"bank {size}, {grid} x {grid} locations: initializers {a:.3f}, inputs {b:.3f} ({b / a:.2f}x)")


if __name__ == "__main__":
    main()
