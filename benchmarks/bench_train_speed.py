"""Pretraining speed of the defaults in optimiser steps, on this host and as a host without AVX-512.

A training budget in seconds means a different number of steps on every host (AVX-512 with bf16
or AMX against AVX2 alone is up to 8x), so the quality tables state steps; this script says what a
budget in seconds buys. Each row runs ``edgessl pretrain --max-steps N --batch-size B`` with every other
option at its default, in a fresh process, and reports the seconds per step of its training loop:

* ``native``: this host as it is (``--torch-precision auto``: bf16 where the CPU has it);
* ``avx2``: the same process with PyTorch's kernels and oneDNN held to AVX2
  (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``) and fp32, what ``auto`` chooses on a
  CPU without native bf16: a stand-in for the 2-core AVX2 hosts CI and many users get;
* each at batch 32 and 64: where a step of 64 costs less than two of 32 (the images/s column),
  the same seconds buy more images with the larger batch.

    python benchmarks/bench_train_speed.py                     # ELPV, 30 steps a row, 2 threads
    python benchmarks/bench_train_speed.py --steps 60 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_quality import DATA, cpu_flags

from edgessl.train.config import PretrainConfig

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
BUDGET_S = 600.0
BATCHES = (32, 64)


def fresh_json(cmd: list[str], threads: int, avx2: bool, env: dict[str, str] | None = None) -> dict:
    """The JSON a fresh process of ``cmd`` prints last, with ``threads`` threads and, with ``avx2``,
    PyTorch and oneDNN held to AVX2 (which must be set before torch loads)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(AVX2 if avx2 else {}), **(env or {})}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def seconds_per_step(data: str, steps: int, threads: int, avx2: bool, batch: int, out: Path) -> float:
    """Seconds per optimiser step of ``edgessl pretrain`` (its own ``seconds`` over its steps)."""
    cmd = [sys.executable, "-m", "edgessl.cli.main", "pretrain", "--data", data, "--max-steps", str(steps),
           "--batch-size", str(batch), "--out", str(out), "--json", *(["--torch-precision", "fp32"] if avx2 else [])]
    summary = fresh_json(cmd, threads, avx2)
    return summary["seconds"] / summary["steps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "elpv" / "solar_cell"))
    ap.add_argument("--steps", type=int, default=30, help="optimiser steps a row")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    default = PretrainConfig().batch_size
    print(f"edgessl pretrain defaults (batch {default}), {args.steps} steps a row, {args.threads} threads "
          f"on {cpu_flags()}")
    print(f"| kernels | batch | s/step | images/s | steps in {BUDGET_S:.0f} s | images in {BUDGET_S:.0f} s | "
          "x the default's images/s |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench_train_speed_") as tmp:
        for avx2 in (False, True):
            rate = {}
            for batch in dict.fromkeys((default, *BATCHES)):  # the default first: the ratios' base
                s = seconds_per_step(args.data, args.steps, args.threads, avx2, batch, Path(tmp) / f"{avx2}-{batch}")
                rate[batch] = batch / s
                label = f"{batch} (default)" if batch == default else str(batch)
                print(f"| {'avx2, fp32' if avx2 else 'native, auto'} | {label} | {s:.3f} | {rate[batch]:.1f} | "
                      f"{BUDGET_S / s:.0f} | {BUDGET_S * rate[batch]:.0f} | {rate[batch] / rate[default]:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
