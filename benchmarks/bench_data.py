"""Training from footage through the disk cache: peak memory and throughput beside an in-memory .npz.

The script writes (under ``--work``, default ``/tmp/edgessl-bench-data``; never beside the data) a
video of ``--frames`` frames (default 50,000) made of CIFAR-10's real training images from
``../shared/data`` enlarged to ``--size`` px, then runs ``edgessl pretrain`` in fresh processes:

1. from the video, first time: frame selection and the cache are built, then ``--steps`` steps;
2. from the video again (cache built): ``--steps`` steps;
3. from an ``.npz`` of the video's first ``--npz-frames`` frames, held in memory (the automatic choice);
4. the same ``.npz`` forced through the disk cache (``EDGESSL_IN_MEMORY_MB=0``).

Runs 2-4 are repeated ``--repeats`` times, interleaved. Peak RSS is the kernel's (``os.wait4``
rusage of each process; the largest over repeats). Images/s is the median over the steps after
``--warmup`` of the per-step times from the run's ``metrics.csv``, then the median over repeats.
Same model, batch, steps and threads in every run. Then the data path alone: random batches
read from the video's cache and from the in-memory tensor of the ``.npz``, no model.

    python benchmarks/bench_data.py --batch-size 16 --steps 8   # 50,000 frames at 224 px
    python benchmarks/bench_data.py --frames 600 --npz-frames 300 --size 64 --steps 4 --repeats 1  # a quick check
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "train"


def source_images(folder: Path, limit: int) -> list[Path]:
    if not folder.is_dir():
        raise SystemExit(f"{folder} is not here (real data lives in ../shared/data); pass --images")
    return sorted(folder.glob("*/*.jpg"))[:limit]


def frame(paths: list[Path], k: int, size: int) -> np.ndarray:
    """Frame ``k``: image ``k mod len(paths)``, mirrored on odd passes, enlarged (BGR, for OpenCV)."""
    img = cv2.imread(str(paths[k % len(paths)]), cv2.IMREAD_COLOR)
    if (k // len(paths)) % 2:
        img = img[:, ::-1]
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)


def write_video(path: Path, paths: list[Path], n: int, size: int) -> None:
    if path.is_file() and int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT)) == n:
        return
    tmp = path.with_suffix(".tmp.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (size, size))
    for k in range(n):
        writer.write(frame(paths, k, size))
    writer.release()
    os.replace(tmp, path)


def write_npz(path: Path, paths: list[Path], n: int, size: int) -> None:
    if not path.is_file():
        images = np.stack([frame(paths, k, size)[:, :, ::-1] for k in range(n)])
        np.savez(path, train_images=images)


def run(name: str, data: str, out: Path, args, env: dict[str, str]) -> dict:
    """One ``edgessl pretrain`` process: its peak RSS, wall time and median step throughput."""
    cmd = [sys.executable, "-m", "edgessl", "pretrain", "--data", data, "--backbone", args.backbone,
           "--image-size", str(args.size), "--batch-size", str(args.batch_size), "--max-steps", str(args.steps),
           "--device", "cpu", "--out", str(out)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    err = proc.stderr.read()
    if status != 0:
        raise SystemExit(f"{name} failed:\n{err[-2000:]}")
    with open(out / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    ends = [int(r["step"]) * args.batch_size / float(r["images_per_s"]) for r in rows]  # loop seconds at each step
    steps = [b - a for a, b in zip(ends, ends[1:])][args.warmup - 1:]
    report = next((line for line in err.splitlines() if line.startswith("edgessl: ")), "")
    return {"name": name, "rss_mb": usage.ru_maxrss / 1024, "wall_s": wall,
            "images_per_s": args.batch_size / statistics.median(steps), "report": report}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=50_000)
    ap.add_argument("--npz-frames", type=int, default=3000)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--backbone", default="mobilenet_v3_small")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the median")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each configuration, interleaved")
    ap.add_argument("--work", default="/tmp/edgessl-bench-data")
    ap.add_argument("--images", default=str(CIFAR), help="CIFAR-10's train/ folder (<class>/*.jpg)")
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    paths = source_images(Path(args.images), 20_000)
    video, npz = work / f"cifar_{args.frames}x{args.size}.avi", work / f"cifar_{args.npz_frames}x{args.size}.npz"
    t = time.perf_counter()
    write_video(video, paths, args.frames, args.size)
    write_npz(npz, paths, args.npz_frames, args.size)
    print(f"inputs ready in {time.perf_counter() - t:.0f} s: {video} ({video.stat().st_size / 2**20:.0f} MiB), "
          f"{npz} ({npz.stat().st_size / 2**20:.0f} MiB)", flush=True)
    cache = work / "cache"
    for stale in cache.glob("*"):  # the first run must build: start from an empty cache
        stale.unlink()
    env = {"EDGESSL_CACHE": str(cache), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    configs = [("video, disk cache", str(video), env),
               (f"npz in memory ({args.npz_frames} frames)", str(npz), env),
               (f"npz through the disk cache ({args.npz_frames} frames)", str(npz), {**env, "EDGESSL_IN_MEMORY_MB": "0"})]
    rows = [run("video, first run (selection + cache built)", str(video), work / "run_build", args, env)]
    print(rows[0], flush=True)
    repeats: dict[str, list[dict]] = {name: [] for name, _, _ in configs}
    for k in range(args.repeats):
        for i, (name, data, extra) in enumerate(configs):
            repeats[name].append(run(name, data, work / f"run_{i}_{k}", args, extra))
            print(repeats[name][-1], flush=True)
    for name, runs in repeats.items():
        rows.append({"name": name, "rss_mb": max(r["rss_mb"] for r in runs),
                     "images_per_s": statistics.median(r["images_per_s"] for r in runs),
                     "wall_s": statistics.median(r["wall_s"] for r in runs)})
    cache_mb = sum(p.stat().st_size for p in cache.glob("images-*.npy")) / 2**20
    print(f"\nData benchmark: {args.backbone} SimCLR at {args.size} px, batch {args.batch_size}, {args.steps} steps "
          f"(median of the last {args.steps - args.warmup}), {env['OMP_NUM_THREADS']} threads, cache {cache_mb:.0f} MiB")
    print("| run | peak RSS (MiB) | images/s | wall (s) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['rss_mb']:.0f} | {r['images_per_s']:.1f} | {r['wall_s']:.0f} |")
    memory = rows[2]["images_per_s"]  # rows: build, video cache, npz memory, npz cache
    print(f"\nthroughput ratio, video from the disk cache / npz in memory: {rows[1]['images_per_s'] / memory:.3f}")
    print(f"throughput ratio, npz from the disk cache / npz in memory: {rows[3]['images_per_s'] / memory:.3f}")
    print(f"peak RSS of the video runs: {max(rows[0]['rss_mb'], rows[1]['rss_mb']):.0f} MiB (goal: under 2048)")
    data_path(npz, cache, args)


def data_path(npz: Path, cache: Path, args) -> None:
    """Images/s of ``images[idx]`` for random batches from the video's cache and from the npz's
    in-memory tensor; this process's peak RSS before and after reading the whole cache."""
    import resource

    import torch

    from edgessl.edge_runtime.data.cache import UInt8Store
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.train.data import CachedImages, load_uint8

    def peak_mb() -> float:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    biggest = max(cache.glob("images-*.npy"), key=lambda p: p.stat().st_size)
    cached = CachedImages(UInt8Store(biggest))
    before = peak_mb()
    for idx in torch.randperm(len(cached)).split(args.batch_size):
        cached[idx]
    print(f"\ndata path alone: reading all {len(cached)} cached images ({biggest.stat().st_size / 2**20:.0f} MiB) "
          f"in random batches: peak RSS {before:.0f} MiB before, {peak_mb():.0f} MiB after")

    def rate(images) -> float:
        g = torch.Generator().manual_seed(0)
        batches = [torch.randint(0, len(images), (args.batch_size,), generator=g) for _ in range(200)]
        images[batches[0]]  # warm-up
        times = []
        for _ in range(5):
            start = time.perf_counter()
            for idx in batches:
                images[idx]
            times.append(time.perf_counter() - start)
        return len(batches) * args.batch_size / statistics.median(times)

    cache_rate = rate(cached)
    memory_rate = rate(load_uint8(open_dataset(str(npz), "train"), PreprocessSpec(args.size, 3)))
    print(f"data path alone, random batches of {args.batch_size} at {args.size} px: in memory {memory_rate:.0f} "
          f"images/s, disk cache {cache_rate:.0f} images/s (ratio {cache_rate / memory_rate:.3f})")


if __name__ == "__main__":
    main()
