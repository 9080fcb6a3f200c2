"""Pretraining speed and kNN quality: edgessl against lightly 1.6.0 on the same CPU, in one run.

    .venv/bin/python benchmarks/bench_vs_lightly.py [--data ../shared/data/pneumoniamnist/pneumoniamnist.npz]
        [--steps 30] [--batch-size 64] [--methods simclr,moco] [--threads 2]

The same method (SimCLR: projection head 512-512-128, NT-Xent at temperature 0.2; MoCo v2: the same
head, a 4096-key queue, InfoNCE at 0.2, key-encoder momentum cosine from 0.99), the same resnet18
(edgessl's backbone at 32 px: its init, seeded alike), the same batch size, image size and
augmentations (random resized crop of scale edgessl's default ``--crop-min`` to 1 and ratio 3/4-4/3,
horizontal flip 1/2, brightness and contrast jitter 0.4 with probability 0.8, grey 0.2, no blur),
AdamW 1e-3, fp32, the same threads. edgessl: its pretext module on its uint8 tensor with its batched
augmentations. lightly: its own ``SimCLRTransform``/``MoCoV2Transform``, projection heads,
``NTXentLoss`` (with its memory bank for MoCo) and ``update_momentum`` in a plain PyTorch loop over
a ``DataLoader`` (0 workers: the same 2 cores). Steps run in interleaved blocks of 5 after one
warm-up step each; images/s is the median over blocks. Then both backbones are embedded by the same
fp32 code (``train.features``) and scored by the same kNN (k=200 accuracy and the one-class 5-NN
AUROC with ``--normal-label``). The row ``edgessl auto`` is edgessl's default precision on this CPU
(bf16 where native).

lightly comes from the package registry into its own environment (``runs/peers/lightly``, a venv
that sees the project's packages through a ``.pth`` and adds lightly and what it needs, so the
project's pins never change); the script creates it on first use and re-runs itself there. When
lightly cannot be installed it says why and prints the edgessl rows alone.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PEER_VENV = ROOT / "runs" / "peers" / "lightly"
LIGHTLY = "lightly==1.6.0"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
BLOCK = 5


def peer_python(venv: Path, requirement: str) -> tuple[Path | None, str]:
    """A venv that sees this interpreter's packages and adds ``requirement``; (python, "") or (None, why)."""
    python = venv / "bin" / "python"
    site = Path(sys.prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    if not python.exists():
        made = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True)
        if made.returncode:
            return None, f"cannot create {venv}: {made.stderr.strip().splitlines()[-1:]}"
        peer_site = venv / site.relative_to(sys.prefix)
        (peer_site / "project_venv.pth").write_text(f"import site; site.addsitedir({str(site)!r})\n")
    pkg = requirement.split("==")[0]
    if subprocess.run([str(python), "-c", f"import {pkg}"], capture_output=True).returncode:
        got = subprocess.run([str(python), "-m", "pip", "install", "-q", requirement], capture_output=True, text=True)
        if got.returncode:
            return None, f"pip install {requirement} failed: {got.stderr.strip().splitlines()[-1:]}"
    return python, ""


def edgessl_step(method_name: str, images, spec, batch_size: int, seed: int):
    import torch

    from edgessl.train.backbones import BackboneConfig, build_backbone
    from edgessl.train.methods import METHODS

    torch.manual_seed(seed)
    backbone = build_backbone(BackboneConfig("resnet18", 1, spec.image_size))
    method = METHODS[method_name].for_data(backbone, spec, len(images))
    opt = torch.optim.AdamW([p for p in method.parameters() if p.requires_grad], lr=1e-3, weight_decay=1e-4)
    g = torch.Generator().manual_seed(seed)
    state = {"step": 0}

    def step(total: int) -> int:
        idx = torch.randint(0, len(images), (batch_size,), generator=g)
        loss, _ = method(images[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if hasattr(method, "on_step_end"):
            method.on_step_end(state["step"] / max(1, total - 1))
        state["step"] += 1
        return float(loss.detach())

    return step, backbone


def lightly_step(method_name: str, pixels, spec, batch_size: int, seed: int):
    """lightly's transforms, heads and losses in a plain loop over a DataLoader of PIL images."""
    import torch
    from PIL import Image
    from lightly.loss import NTXentLoss
    from lightly.models.modules import MoCoProjectionHead, SimCLRProjectionHead
    from lightly.models.utils import deactivate_requires_grad, update_momentum
    from lightly.transforms import MoCoV2Transform, SimCLRTransform
    from lightly.utils.scheduler import cosine_schedule

    from edgessl.train.augment import AugmentConfig
    from edgessl.train.backbones import BackboneConfig, build_backbone

    torch.manual_seed(seed)
    backbone = build_backbone(BackboneConfig("resnet18", 1, spec.image_size))
    common = dict(input_size=spec.image_size, cj_prob=0.8, cj_strength=1.0, cj_bright=0.4, cj_contrast=0.4,
                  cj_sat=0.0, cj_hue=0.0, min_scale=AugmentConfig().crop_scale[0], random_gray_scale=0.2,
                  gaussian_blur=0.0, hf_prob=0.5, normalize={"mean": list(spec.mean), "std": list(spec.std)})
    transform = (SimCLRTransform if method_name == "simclr" else MoCoV2Transform)(**common)

    class Images(torch.utils.data.Dataset):
        def __len__(self):
            return len(pixels)

        def __getitem__(self, i):
            return transform(Image.fromarray(pixels[i]))

    loader = torch.utils.data.DataLoader(Images(), batch_size=batch_size, shuffle=True, drop_last=True,
                                         num_workers=0, generator=torch.Generator().manual_seed(seed))
    d = backbone.feature_dim
    if method_name == "simclr":
        head = SimCLRProjectionHead(d, d, 128)
        criterion = NTXentLoss(temperature=0.2)
        params = list(backbone.parameters()) + list(head.parameters())
    else:
        head = MoCoProjectionHead(d, d, 128)
        key_backbone, key_head = copy.deepcopy(backbone), copy.deepcopy(head)
        deactivate_requires_grad(key_backbone)
        deactivate_requires_grad(key_head)
        criterion = NTXentLoss(temperature=0.2, memory_bank_size=(min(4096, len(pixels)), 128))
        params = list(backbone.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=1e-4)
    state = {"step": 0, "it": iter(loader)}

    def step(total: int) -> int:
        try:
            views = next(state["it"])
        except StopIteration:
            state["it"] = iter(loader)
            views = next(state["it"])
        x0, x1 = views
        if method_name == "simclr":
            z = head(backbone(torch.cat([x0, x1])))
            loss = criterion(*z.chunk(2))
        else:
            m = cosine_schedule(state["step"], total, 0.99, 1.0)
            update_momentum(backbone, key_backbone, m)
            update_momentum(head, key_head, m)
            q = head(backbone(x0))
            with torch.no_grad():
                k = key_head(key_backbone(x1))
            loss = criterion(q, k)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        state["step"] += 1
        return float(loss.detach())

    return step, backbone


def knn_figures(backbone, train_x, train_y, test_x, test_y, spec, normal: int) -> tuple[float, float]:
    from edgessl.edge_runtime.data.metrics import auroc
    from edgessl.train import precision
    from edgessl.train.features import embed_tensor
    from edgessl.train.knn import knn_distance, knn_predict

    precision.select("fp32")
    a, b = embed_tensor(backbone, train_x, spec), embed_tensor(backbone, test_x, spec)
    acc = float((knn_predict(a, train_y, b, 200) == test_y).mean())
    return acc, auroc(test_y != normal, knn_distance(a[train_y == normal], b, k=5))


def run(args) -> None:
    import numpy as np
    import torch

    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.images import to_uint8
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.train import precision
    from edgessl.train.data import channel_stats, load_uint8

    torch.set_num_threads(args.threads)
    have_lightly, why = True, ""
    try:
        import lightly  # noqa: F401
    except ImportError as exc:
        have_lightly, why = False, str(exc)
    train_ds, test_ds = open_dataset(args.data, "train"), open_dataset(args.data, "test")
    geometry = PreprocessSpec(32, 1, (0.5,), (0.25,))
    images = load_uint8(train_ds, geometry)
    mean, std = channel_stats(images)
    spec = PreprocessSpec(32, 1, mean, std)
    pixels = [to_uint8(train_ds.image(i)) for i in range(len(train_ds))]  # lightly crops these to 32 px
    n_eval = min(args.eval_images, len(train_ds))
    pick = np.sort(np.random.RandomState(args.seed).permutation(len(train_ds))[:n_eval])
    train_x, train_y = images[torch.from_numpy(pick)], np.asarray(train_ds.labels)[pick]
    test_x, test_y = load_uint8(test_ds, spec), np.asarray(test_ds.labels)
    normal = int(args.normal_label)
    print(f"{args.data}: {len(images)} train images at 32 px grey, batch {args.batch_size}, {args.steps} steps, "
          f"{torch.get_num_threads()} threads; kNN on {n_eval} train / {len(test_x)} test images; "
          f"CPU native bf16: {precision.cpu_has_native_bf16()}")
    if not have_lightly:
        print(f"lightly not importable ({why}): lightly rows skipped")
    print(f"{'method':<7} {'tool':<13} {'images/s':>9} {'x lightly':>10} {'last loss':>10} {'kNN acc':>8} {'kNN AUROC':>10}")
    for method_name in args.methods.split(","):
        contenders = {"edgessl fp32": ("fp32", edgessl_step), "edgessl auto": ("auto", edgessl_step)}
        if have_lightly:
            contenders["lightly"] = ("fp32", lightly_step)
        steps, models, rates = {}, {}, {k: [] for k in contenders}
        for name, (compute, maker) in contenders.items():
            data = images if maker is edgessl_step else pixels
            steps[name], models[name] = maker(method_name, data, spec, args.batch_size, args.seed)
        losses = {}
        for start in [-1, *range(0, args.steps, BLOCK)]:  # block -1: one warm-up step each
            for name, (compute, maker) in contenders.items():
                precision.select(compute)
                c = precision.active("cpu")
                n = 1 if start < 0 else min(BLOCK, args.steps - start)
                t0 = time.perf_counter()
                for _ in range(n):
                    with c.autocast():
                        losses[name] = steps[name](args.steps)
                if start >= 0:
                    rates[name].append(n * args.batch_size / (time.perf_counter() - t0))
        base = statistics.median(rates["lightly"]) if have_lightly else None
        for name in contenders:
            acc, au = knn_figures(models[name], train_x, train_y, test_x, test_y, spec, normal)
            ips = statistics.median(rates[name])
            ratio = f"{ips / base:>10.2f}" if base else f"{'-':>10}"
            print(f"{method_name:<7} {name:<13} {ips:>9.1f} {ratio} {losses.get(name, float('nan')):>10.4f} "
                  f"{acc:>8.4f} {au:>10.4f}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--normal-label", default="0")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--methods", default="simclr,moco")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--eval-images", type=int, default=2000, help="train images embedded for the kNN figures")
    ap.add_argument("--no-peer-venv", action="store_true", help="do not create or use runs/peers/lightly")
    args = ap.parse_args()
    try:
        import lightly  # noqa: F401
    except ImportError:
        if not args.no_peer_venv and os.environ.get("EDGESSL_PEER") != "1":
            python, why = peer_python(PEER_VENV, LIGHTLY)
            if python is not None:
                os.execve(str(python), [str(python), *sys.argv], {**os.environ, "EDGESSL_PEER": "1"})
            print(f"lightly unavailable: {why}")
    run(args)


if __name__ == "__main__":
    main()
