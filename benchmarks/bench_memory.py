"""Memory on the device: peak RSS of ``edgessl run`` per detector and coreset size, and image AUROC
and per-frame latency against the coreset size, in one run.

    .venv/bin/python benchmarks/bench_memory.py [--data ../shared/data/magnetic_tile/tile]
        [--image-size 64] [--coresets 256,1024,4096] [--precisions fp32,int8] [--work runs/bench_memory]

One randomly initialised resnet18 (the backbone's own stem at ``--image-size``, grey; random init is
what the figures are about: memory and the coreset's effect, not the backbone) is fitted once per
detector configuration on the normal training images of ``--data`` (``gaussian``; ``knn`` with every
embedding; ``patch`` at each ``--coresets`` size; ``--detectors`` picks), exported and, with int8 in
``--precisions``, calibrated to int8-cpu (a bundle whose INT8 fails the calibration's accuracy gate
gets no int8 row, and the script says why). Per bundle and precision: ``edgessl run --source DATA --split test`` in a fresh process
(peak RSS: its own ``VmHWM``), then, in this process, image AUROC of the test split
and the median ``Pipeline.score`` latency of 50 test images after 10 warm-up (ms). Writes
``memory_vs_coreset.png`` (RSS and AUROC against the patch coreset size) and ``bench_memory.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from timing_bundle import timing_bundle

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "magnetic_tile" / "tile"


def peak_rss_mb() -> float:
    """This process's peak RSS (MB): ``VmHWM``, which starts afresh at ``exec`` (``ru_maxrss`` does
    not: a child forked from a big parent would inherit the parent's peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM in /proc/self/status (Linux only)")


def child_run(argv: list[str]) -> None:
    """``edgessl ARGV`` in this fresh process, then its peak RSS on the last line of stderr."""
    from edgessl.cli import main as cli

    code = cli(argv)
    print(f"peak_rss_mb {peak_rss_mb():.1f}", file=sys.stderr)
    raise SystemExit(code)


def run_rss_mb(bundle: Path, data: str, precision: str, out: Path) -> float:
    """Peak RSS (MB) of one ``edgessl run`` process over the test split."""
    cmd = [sys.executable, __file__, "--child-run", "run", "--bundle", str(bundle), "--backend", "ort-cpu",
           "--precision", precision, "--source", data, "--split", "test", "--out", str(out)]
    done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr[-400:]}")
    return float(done.stderr.strip().splitlines()[-1].split()[1])


def quality(bundle: Path, data: str, precision: str) -> tuple[float, float]:
    """(image AUROC on the test split, median ms per ``Pipeline.score``)."""
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.data.metrics import auroc
    from edgessl.edge_runtime.pipeline import Pipeline

    pipe = Pipeline.load(bundle, backend="ort-cpu", precision=precision)
    ds = open_dataset(data, "test")
    images = [ds.image(i) for i in range(len(ds))]
    normal = ds.class_names.index("good")
    scores = [pipe.score(img).raw_score for img in images]
    for img in images[:10]:
        pipe.score(img)
    times = []
    for img in images[:50]:
        t0 = time.perf_counter()
        pipe.score(img)
        times.append((time.perf_counter() - t0) * 1e3)
    return auroc(np.asarray(ds.labels) != normal, np.asarray(scores)), statistics.median(times)


def main() -> None:
    if sys.argv[1:2] == ["--child-run"]:
        child_run(sys.argv[2:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--coresets", default="256,1024,4096")
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_memory"))
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--detectors", default="gaussian,knn,patch")
    args = ap.parse_args()
    precisions = args.precisions.split(",")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    configs = [("gaussian", None), ("knn", None)] + [("patch", int(c)) for c in args.coresets.split(",")]
    rows = []
    for detector, coreset in (c for c in configs if c[0] in args.detectors.split(",")):
        bundle, note = timing_bundle(work / f"{detector}-{coreset}", args.image_size, 1, detector, args.data,
                                     None, coreset, "int8" in precisions)
        if note and "int8" in precisions:
            print(f"{detector}-{coreset}: no int8 row ({note})")
        bank = json.loads((bundle / "detector" / "detector.json").read_text())["params"].get("bank_size", 0)
        for precision in (p for p in precisions if p == "fp32" or not note):
            rss = run_rss_mb(bundle, args.data, precision, work / f"{detector}-{coreset}-{precision}.jsonl")
            au, ms = quality(bundle, args.data, precision)
            rows.append({"detector": detector, "coreset": coreset, "bank": bank, "precision": precision,
                         "rss_mb": rss, "auroc": au, "ms": ms})
            print(rows[-1], flush=True)
    print(f"\n{args.data}, resnet18 random init, {args.image_size} px grey; peak RSS of `edgessl run` over the test "
          "split (own process); AUROC on the test split; ms = median Pipeline.score of 50 images")
    print(f"{'detector':<9} {'bank':>6} {'model':<6} {'peak RSS MB':>12} {'AUROC':>7} {'ms/image':>9}")
    for r in rows:
        print(f"{r['detector']:<9} {r['bank']:>6} {r['precision']:<6} {r['rss_mb']:>12.0f} {r['auroc']:>7.4f} {r['ms']:>9.2f}")
    (work / "bench_memory.json").write_text(json.dumps(rows, indent=2) + "\n")
    plot(rows, work / "memory_vs_coreset.png")
    print(f"wrote {work / 'memory_vs_coreset.png'}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    for precision, style in (("fp32", "o-"), ("int8", "s--")):
        patch = [r for r in rows if r["detector"] == "patch" and r["precision"] == precision]
        banks = [r["bank"] for r in patch]
        a.plot(banks, [r["rss_mb"] for r in patch], style, label=precision)
        b.plot(banks, [r["auroc"] for r in patch], style, label=precision)
    for ax, label in ((a, "peak RSS of edgessl run (MB)"), (b, "image AUROC")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("patch coreset size")
        ax.set_ylabel(label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    main()
