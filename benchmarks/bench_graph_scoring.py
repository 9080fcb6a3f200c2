"""The detector scored inside the exported graph: the runtime against bare ONNX Runtime of the same
full graph, and the scoring's cost over the network alone, in one run.

    .venv/bin/python benchmarks/bench_graph_scoring.py [--work runs/bench_graph_scoring] [--sizes 28,64,224]
        [--detectors combined,patch] [--iterations 200] [--threads 0]

Builds (once, in --work) per image size and detector a bundle (``timing_bundle.py``: random-init
resnet18, grey below 224 px, RGB at 224, fitted on the digits' class 0 with fit's defaults, the
bank at fit's default size, exported with its scoring in the graph, INT8 for the CPU). Then per
bundle and precision (fp32, int8-cpu), at batch 1 on the CPU (``--threads`` intra-op threads; 0:
ONNX Runtime's default, one per core),
``edgessl bench``'s interleaved timing (``edge_runtime.timing``) of:

* ``runtime``: ``Pipeline.score_batch`` end to end (preprocessing, one session call, threshold);
* ``bare_ort``: the very same session (the full graph: network and scoring) on preprocessed tensors;
* ``network``: the same model without its scoring nodes, on the same tensors (same options);
* ``numpy_scoring``: that network, then the numpy detector on its outputs (how the runtime scored
  before the scoring was in the graph).

Prints the CPU and its flags, p50s, ``runtime / bare`` (goal <= 1.05), ``bare / network`` (what the
in-graph scoring costs; the patch detector's goal <= 1.3 at 64 and 224 px) and ``numpy / bare``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx

from bench_quality import cpu_flags
from timing_bundle import timing_bundle

from edgessl.edge_runtime.graph_scores import SCORING_OUTPUTS
from edgessl.export.scoring_graph import SCORING_PREFIX


def network_alone(model_path: Path) -> bytes:
    """The model without its scoring: the ``score/`` nodes, their initializers and outputs removed."""
    model = onnx.load(str(model_path))
    kept = [n for n in model.graph.node if not n.name.startswith(SCORING_PREFIX)]
    outputs = [o for o in model.graph.output if o.name not in SCORING_OUTPUTS]
    inits = [i for i in model.graph.initializer if not i.name.startswith(SCORING_PREFIX)]
    for field, items in ((model.graph.node, kept), (model.graph.output, outputs), (model.graph.initializer, inits)):
        del field[:]
        field.extend(items)
    return model.SerializeToString()


def contenders(pipe) -> dict:
    """``network`` and ``numpy_scoring`` on a session with the pipeline's own options."""
    import onnxruntime as ort

    options = pipe.runner.session.get_session_options()
    session = ort.InferenceSession(network_alone(pipe.runner.model_path), options, providers=["CPUExecutionProvider"])
    names, input_name = [o.name for o in session.get_outputs()], session.get_inputs()[0].name

    def network(x):
        return dict(zip(names, session.run(names, {input_name: x})))

    return {"network": network, "numpy_scoring": lambda x: pipe.detector.score(network(x))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="runs/bench_graph_scoring")
    ap.add_argument("--sizes", default="28,64,224")
    ap.add_argument("--detectors", default="combined,patch", help="detectors timed (combined: fit's default)")
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")
    args = ap.parse_args()
    from edgessl.edge_runtime.backends.ort import OrtOptions
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl.edge_runtime.timing import bench_pipeline, synthetic_images

    work = Path(args.work)
    bundles = {(size, detector): timing_bundle(work / f"{size}-{detector}", size, 1 if size < 224 else 3, detector)
               for size in [int(s) for s in args.sizes.split(",")] for detector in args.detectors.split(",")}
    rows = []
    for (size, detector), (bundle, note) in bundles.items():  # all built first: the timing runs in one stretch
        for precision in ("fp32",) if note else ("fp32", "int8"):
            pipe = Pipeline.load(bundle, backend="ort-cpu", precision=precision,
                                 options=OrtOptions(intra_op_threads=args.threads))
            r = bench_pipeline(pipe, synthetic_images(16, size, pipe.spec.channels), 1, args.iterations, 20,
                               contenders(pipe))
            r.update(detector=detector, bank=pipe.detector.params(), note=note)
            rows.append(r)
    print(f"CPU: {cpu_flags()}")
    print(f"resnet18 random init, batch 1, ort-cpu, {args.threads or 'default'} threads, {args.iterations} timed "
          "calls per contender "
          "(interleaved blocks, after 20 warm-up), p50 ms")
    print(f"{'px':>4} {'detector':<9} {'model':<9} {'runtime':>8} {'bare':>8} {'network':>8} {'numpy':>8} "
          f"{'run/bare':>8} {'bare/net':>8} {'numpy/bare':>10}")
    for r in rows:
        p = {k: v["latency_ms"]["p50"] for k, v in r["results"].items()}
        print(f"{r['image_size']:>4} {r['detector']:<9} {r['precision']:<9} {p['runtime']:>8.3f} {p['bare_ort']:>8.3f} "
              f"{p['network']:>8.3f} {p['numpy_scoring']:>8.3f} {p['runtime'] / p['bare_ort']:>8.3f} "
              f"{p['bare_ort'] / p['network']:>8.3f} {p['numpy_scoring'] / p['bare_ort']:>10.3f}")
    worst = max(r["results"]["runtime"]["latency_ms"]["p50"] / r["results"]["bare_ort"]["latency_ms"]["p50"]
                for r in rows)
    print(f"worst runtime/bare ratio {worst:.3f} (goal <= 1.05)")
    (work / "bench_graph_scoring.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
