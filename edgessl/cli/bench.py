"""``bench`` and ``demo``: the commands that span stages (kept out of ``edge_runtime``, which
imports no other stage)."""

from __future__ import annotations

import argparse

from edgessl.bench import BenchConfig
from edgessl.demo import DemoConfig
from edgessl.train.config import BACKBONES, DETECTOR_KINDS, METHOD_SUMMARIES

from .options import Command, Opt, Outcome, config_from_args
from .shared import BUNDLE, COMPUTE, RUN_DIR


def _bench(args: argparse.Namespace) -> Outcome:
    """Time Pipeline.score_batch (preprocessing + inference + scoring), a bare ONNX Runtime session of
    the same model on preprocessed tensors, and (where torch and the run directory exist) the
    PyTorch checkpoint in eager mode, interleaved in one run after a warm-up. Prints p50/p90/p99 ms
    per batch, images/s, and ratios.
    """
    from edgessl.bench import bench
    from edgessl.edge_runtime.timing import bench_table

    result = bench(config_from_args(BenchConfig, args))
    text = bench_table(result) + (f"\nnote: {result['note']}" if result.get("note") else "")
    return Outcome(result, text)


BENCH = Command(
    "bench", _bench, (BenchConfig,), (
        Opt("--batch-size", "images per timed call"),
        Opt("--iterations", "timed calls per contender"),
        Opt("--warmup", "untimed calls first"),
        Opt("--data", "bench on this dataset's test images instead of random pixels"),
        Opt("--run", "PyTorch run for the eager baseline (default: the bundle's provenance)", metavar=RUN_DIR),
        Opt("--no-eager", "turn off: the PyTorch eager baseline"),
        *BUNDLE),
    help="latency/throughput of a bundle: runtime vs bare ONNX Runtime vs PyTorch eager")


def _demo(args: argparse.Namespace) -> Outcome:
    """Pretrain a backbone (the default pretext task, a time budget), fit an anomaly detector on the
    normal class, export a verified bundle, calibrate INT8 for the CPU, evaluate fp32 and INT8
    through the torch-free runtime, bench it against ONNX Runtime and PyTorch eager, and print a
    table. A few minutes on two CPU cores with the defaults.
    """
    from edgessl.demo import run_demo, summary_table

    figures = run_demo(config_from_args(DemoConfig, args))
    return Outcome(figures, summary_table(figures))


DEMO = Command(
    "demo", _demo, (DemoConfig,), (
        Opt("--data", "dataset (digits: normal class 0)"),
        Opt("--normal-label", "the normal class (default: 0 for digits; required otherwise)"),
        Opt("--out", "where the run, bundle, plots and demo.json go"),
        Opt("--method", "pretext task", choices=tuple(METHOD_SUMMARIES)),
        Opt("--backbone", "network trained", choices=BACKBONES),
        Opt("--image-size", "model input size in pixels"),
        Opt("--budget", "pretraining time", metavar="SECONDS"),
        Opt("--detector", "detector kind", choices=DETECTOR_KINDS),
        Opt("--target-fpr", "false-positive rate of the threshold (fewer normal images than it needs: the "
                            "tightest they support, as `fit` does)"),
        Opt("--bench-iterations", "timed calls per bench contender"),
        *COMPUTE),
    help="the whole pipeline on the built-in digits (or --data): train, fit, export, INT8, evaluate, bench")

COMMANDS = (BENCH, DEMO)
