"""Pretraining speed of the defaults in optimiser steps, on this host and as a host without AVX-512.

A training budget in seconds means a different number of steps on every host (AVX-512 with bf16
or AMX against AVX2 alone is up to 8x), so the quality tables state steps; this script says what a
budget in seconds buys. Each row runs ``edgessl pretrain --max-steps N`` with every other option at
its default, in a fresh process, and reports the seconds per step of its training loop:

* ``native``: this host as it is (``--torch-precision auto``: bf16 where the CPU has it);
* ``avx2``: the same process with PyTorch's kernels and oneDNN held to AVX2
  (``ATEN_CPU_CAPABILITY=avx2``, ``ONEDNN_MAX_CPU_ISA=AVX2``) and fp32, what ``auto`` chooses on a
  CPU without native bf16: a stand-in for the 2-core AVX2 hosts CI and many users get;
* each at the default stem (stride 2 at 32 px) and the stride-1 stem the defaults used before.

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

AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
BUDGET_S = 600.0


def seconds_per_step(data: str, steps: int, threads: int, avx2: bool, stem: list[str], out: Path) -> float:
    """Seconds per optimiser step of ``edgessl pretrain`` (its own ``seconds`` over its steps)."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(AVX2 if avx2 else {})}
    cmd = [sys.executable, "-m", "edgessl.cli.main", "pretrain", "--data", data, "--max-steps", str(steps),
           "--out", str(out), "--json", *stem, *(["--torch-precision", "fp32"] if avx2 else [])]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {done.stderr.strip().splitlines()[-1:]}")
    summary = json.loads(done.stdout)
    return summary["seconds"] / summary["steps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA / "elpv" / "solar_cell"))
    ap.add_argument("--steps", type=int, default=30, help="optimiser steps a row")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    print(f"edgessl pretrain defaults, {args.steps} steps a row, {args.threads} threads on {cpu_flags()}")
    print("| kernels | stem | s/step | steps in 600 s | x default native |")
    print("|---|---|---|---|---|")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="bench_train_speed_") as tmp:
        for avx2 in (False, True):
            for name, stem in (("default", []), ("stride 1 (before)", ["--stem-stride", "1"])):
                out = Path(tmp) / f"{avx2}-{len(stem)}"
                rows[avx2, name] = s = seconds_per_step(args.data, args.steps, args.threads, avx2, stem, out)
                ratio = s / rows[False, "default"]
                print(f"| {'avx2, fp32' if avx2 else 'native, auto'} | {name} | {s:.3f} | {BUDGET_S / s:.0f} | "
                      f"{ratio:.2f} |", flush=True)


if __name__ == "__main__":
    main()
