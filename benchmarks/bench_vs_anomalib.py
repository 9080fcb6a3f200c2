"""PatchCore detection: edgessl against anomalib 2.7.0 on the same backbone weights, data and coreset ratio.

    .venv/bin/python benchmarks/bench_vs_anomalib.py [--data ../shared/data/magnetic_tile/tile]
        [--image-size 128] [--train-images 200] [--coreset-ratio 0.04] [--timed 100]

Both tools get the same randomly initialised resnet18 (anomalib's, built with ``pre_trained=False``,
its layer1-3 weights loaded into edgessl's backbone), the same input size (RGB, ImageNet mean/std),
layers 2+3 with 3x3 averaging, the same coreset ratio of all training patches, nearest neighbour
(k=1) patch distance and image score = max; the first ``--train-images`` normal images of the
MVTec-layout ``--data`` (linked under ``--work``, never written beside the data) and its whole
test split. Every phase runs in its own process (its peak RSS is its own):

* ``anomalib fit``: ``Engine.fit`` of ``Patchcore`` on a ``Folder`` datamodule, then
  ``Engine.export`` (torch and ONNX);
* ``anomalib torch``: its ``TorchInferencer`` on the exported model, one image at a time;
* ``anomalib onnx``: its exported ONNX model in a bare ONNX Runtime session (anomalib's own ONNX
  inferencer is OpenVINO's, not installed here);
* ``edgessl fit``: ``fit_run`` (patch detector, ``--coreset`` = the same count), ``export_bundle``
  and the INT8 calibration;
* ``edgessl fp32`` / ``edgessl int8-cpu``: the bundle through ``Pipeline.score`` one image at a time.

Inference: ``--timed`` test images decoded beforehand, after 10 warm-up calls, median per image;
image AUROC over the whole test split. anomalib comes from the package registry into its own
environment (``runs/peers/anomalib``, seeing the project's packages through a ``.pth``; the
project's pins never change): created on first use. Without it, the anomalib rows are skipped with
the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_memory import peak_rss_mb  # noqa: E402  (VmHWM: right for a child of a big parent)
from bench_vs_lightly import peer_python  # noqa: E402  (the peer-venv helper both peer benchmarks use)

PEER_VENV = ROOT / "runs" / "peers" / "anomalib"
ANOMALIB = "anomalib==2.7.0"
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "magnetic_tile" / "tile"
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))




def link_data(data: Path, work: Path, train_images: int) -> Path:
    """``work/data``: the first ``train_images`` of train/good and the whole test split, as symlinks."""
    root = work / "data"
    if root.is_dir():
        return root
    (root / "train" / "good").mkdir(parents=True)
    for p in sorted((data / "train" / "good").iterdir())[:train_images]:
        (root / "train" / "good" / p.name).symlink_to(p)
    (root / "test").symlink_to(data / "test")
    return root


def test_images(root: Path) -> tuple[list[Path], list[int]]:
    paths, labels = [], []
    for d in sorted((root / "test").iterdir()):
        for p in sorted(d.iterdir()):
            paths.append(p)
            labels.append(0 if d.name == "good" else 1)
    return paths, labels


def timed_scores(score, images, timed: int) -> tuple[list[float], float]:
    """Scores of all ``images`` and the median ms per image over the first ``timed`` (after 10 warm-up)."""
    for img in images[:10]:
        score(img)
    times, scores = [], []
    for i, img in enumerate(images):
        t0 = time.perf_counter()
        scores.append(float(score(img)))
        if i < timed:
            times.append((time.perf_counter() - t0) * 1e3)
    return scores, statistics.median(times)


def phase_anomalib_fit(args, root: Path, work: Path) -> dict:
    import torch
    from anomalib.data import Folder
    from anomalib.deploy import ExportType
    from anomalib.engine import Engine
    from anomalib.models import Patchcore

    torch.manual_seed(args.seed)
    size = (args.image_size, args.image_size)
    model = Patchcore(backbone="resnet18", layers=("layer2", "layer3"), pre_trained=False,
                      coreset_sampling_ratio=args.coreset_ratio, num_neighbors=1,
                      pre_processor=Patchcore.configure_pre_processor(image_size=size),
                      evaluator=False, visualizer=False)
    torch.save(model.model.feature_extractor.feature_extractor.state_dict(), work / "backbone.pt")
    defects = [f"test/{d.name}" for d in sorted((root / "test").iterdir()) if d.name != "good"]
    dm = Folder(name="bench", root=root, normal_dir="train/good", abnormal_dir=defects, normal_test_dir="test/good",
                train_batch_size=32, eval_batch_size=32, num_workers=0, test_split_mode="from_dir",
                val_split_mode="from_test", val_split_ratio=0.05, seed=args.seed)  # Engine.fit needs a val split
    engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=str(work / "anomalib"),
                    enable_progress_bar=False)
    t0, c0 = time.perf_counter(), time.process_time()
    engine.fit(model=model, datamodule=dm)
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    pt = engine.export(model, ExportType.TORCH, export_root=work / "anomalib", input_size=size)
    onnx = engine.export(model, ExportType.ONNX, export_root=work / "anomalib", input_size=size)
    bank = int(model.model.memory_bank.shape[0])
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu, "bank": bank, "torch": str(pt), "onnx": str(onnx), "rss_mb": peak_rss_mb()}


def phase_anomalib_infer(args, root: Path, work: Path, kind: str) -> dict:
    import numpy as np
    import torch
    from PIL import Image

    from edgessl.edge_runtime.data.metrics import auroc

    fit = json.loads((work / "anomalib_fit.json").read_text())
    paths, labels = test_images(root)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
    if kind == "torch":
        from anomalib.deploy import TorchInferencer

        inferencer = TorchInferencer(path=fit["torch"], device="cpu")

        def score(img):
            with torch.inference_mode():
                return inferencer.predict(img).pred_score.item()
    else:
        import onnxruntime as ort

        sess = ort.InferenceSession(fit["onnx"], providers=["CPUExecutionProvider"])
        name = sess.get_inputs()[0].name
        outputs = [o.name for o in sess.get_outputs()]
        which = next(i for i, o in enumerate(outputs) if "score" in o)
        size = (args.image_size, args.image_size)

        def score(img):
            x = np.asarray(Image.fromarray(img).resize(size, Image.BILINEAR), np.float32) / 255.0
            return sess.run(outputs, {name: x.transpose(2, 0, 1)[None]})[which].ravel()[0]
    scores, ms = timed_scores(score, images, args.timed)
    return {"ms": ms, "auroc": auroc(np.array(labels), np.array(scores)), "rss_mb": peak_rss_mb()}


def phase_edgessl_fit(args, root: Path, work: Path) -> dict:
    import torch

    from edgessl.demo import _calibrate
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.backbones import BackboneConfig, build_backbone
    from edgessl.train.checkpoint import save_model
    from edgessl.train.fit import FitConfig, fit_run

    backbone = build_backbone(BackboneConfig("resnet18", 3, args.image_size))
    state = torch.load(work / "backbone.pt")
    mapped = {}
    for k, v in state.items():
        head, _, rest = k.partition(".")
        if head == "conv1":
            mapped[f"stages.0.0.{rest}"] = v
        elif head == "bn1":
            mapped[f"stages.0.1.{rest}"] = v
        elif head.startswith("layer"):
            mapped[f"stages.{head[5:]}.{rest}"] = v
    missing = backbone.load_state_dict(mapped, strict=False).missing_keys
    assert all(k.startswith("stages.4.") for k in missing), missing  # only layer4 (unused by patches) is not shared
    spec = PreprocessSpec(args.image_size, 3, *IMAGENET)
    run, bundle = work / "edgessl" / "run", work / "edgessl" / "bundle"
    save_model(run, backbone, spec, {"method": "random-init (anomalib's weights)", "data": str(root)})
    fit = json.loads((work / "anomalib_fit.json").read_text())
    t0, c0 = time.perf_counter(), time.process_time()
    fit_run(FitConfig(run=str(run), data=str(root), detector="patch", coreset=fit["bank"], k=1, target_fpr=0.1,
                      device="cpu", batch_size=32, torch_precision="fp32"))
    fit_s, fit_cpu = time.perf_counter() - t0, time.process_time() - c0
    t1 = time.perf_counter()
    export_bundle(ExportConfig(run=str(run), out=str(bundle), verify_images=16, force=True))
    note = _calibrate(bundle, str(root))
    return {"fit_s": fit_s, "fit_cpu_s": fit_cpu, "export_calibrate_s": time.perf_counter() - t1, "int8": note or "ok",
            "bundle": str(bundle), "rss_mb": peak_rss_mb()}


def phase_edgessl_infer(args, root: Path, work: Path, precision: str) -> dict:
    import numpy as np

    from edgessl.edge_runtime.data.metrics import auroc
    from edgessl.edge_runtime.images import read_image
    from edgessl.edge_runtime.pipeline import Pipeline

    fit = json.loads((work / "edgessl_fit.json").read_text())
    pipe = Pipeline.load(fit["bundle"], backend="ort-cpu", precision=precision)
    paths, labels = test_images(root)
    images = [read_image(p) for p in paths]
    scores, ms = timed_scores(lambda img: pipe.score(img).raw_score, images, args.timed)
    return {"ms": ms, "auroc": auroc(np.array(labels), np.array(scores)), "rss_mb": peak_rss_mb()}


PHASES = {
    "anomalib_fit": phase_anomalib_fit,
    "anomalib_torch": lambda a, r, w: phase_anomalib_infer(a, r, w, "torch"),
    "anomalib_onnx": lambda a, r, w: phase_anomalib_infer(a, r, w, "onnx"),
    "edgessl_fit": phase_edgessl_fit,
    "edgessl_fp32": lambda a, r, w: phase_edgessl_infer(a, r, w, "fp32"),
    "edgessl_int8": lambda a, r, w: phase_edgessl_infer(a, r, w, "int8"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--work", default=str(ROOT / "runs" / "bench_anomalib"))
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--train-images", type=int, default=200)
    ap.add_argument("--coreset-ratio", type=float, default=0.04)
    ap.add_argument("--timed", type=int, default=100)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--phase", choices=list(PHASES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    root = link_data(Path(args.data), work, args.train_images)
    if args.phase:
        import torch

        torch.set_num_threads(args.threads)
        result = PHASES[args.phase](args, root, work)
        (work / f"{args.phase}.json").write_text(json.dumps(result))
        return
    python, why = peer_python(PEER_VENV, ANOMALIB)
    # TRUST_REMOTE_CODE: anomalib's TorchInferencer unpickles the model this script itself exported
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "TRUST_REMOTE_CODE": "1"}
    results = {}
    for phase in PHASES:
        exe = python if phase.startswith("anomalib") else Path(sys.executable)
        if exe is None:
            results[phase] = {"skipped": f"anomalib unavailable: {why}"}
            continue
        done = subprocess.run([str(exe), __file__, *sys.argv[1:], "--phase", phase], env=env,
                              capture_output=True, text=True)
        if done.returncode:
            tail = [line for line in done.stderr.strip().splitlines() if line.strip()][-1:]
            results[phase] = {"skipped": f"failed: {tail}"}
            continue
        results[phase] = json.loads((work / f"{phase}.json").read_text())
    print(f"PatchCore, resnet18 random init (the same weights), {args.image_size} px RGB, "
          f"{args.train_images} train images of {args.data}, coreset ratio {args.coreset_ratio}, k=1; "
          f"{args.threads} threads; inference: median ms per image over {args.timed} test images")
    print(f"{'phase':<18} {'fit s':>8} {'fit CPU s':>9} {'ms/image':>9} {'images/s':>9} {'AUROC':>7} {'peak RSS MB':>12}")
    for phase, r in results.items():
        if "skipped" in r:
            print(f"{phase:<18} {r['skipped']}")
            continue
        fit = f"{r['fit_s']:>8.1f} {r['fit_cpu_s']:>9.1f}" if "fit_s" in r else f"{'':>8} {'':>9}"
        ms = f"{r['ms']:>9.2f} {1e3 / r['ms']:>9.1f} {r['auroc']:>7.4f}" if "ms" in r else f"{'':>9} {'':>9} {'':>7}"
        print(f"{phase:<18} {fit} {ms} {r['rss_mb']:>12.0f}")
    for a, b in (("edgessl_fp32", "anomalib_torch"), ("edgessl_int8", "anomalib_torch"), ("edgessl_fp32", "anomalib_onnx")):
        if "ms" in results.get(a, {}) and "ms" in results.get(b, {}):
            print(f"{a} vs {b}: {results[b]['ms'] / results[a]['ms']:.2f}x images/s")
    if "fit_s" in results.get("edgessl_fit", {}) and "fit_s" in results.get("anomalib_fit", {}):
        print(f"fit CPU time: anomalib {results['anomalib_fit']['fit_cpu_s']:.1f} s / edgessl "
              f"{results['edgessl_fit']['fit_cpu_s']:.1f} s = "
              f"{results['anomalib_fit']['fit_cpu_s'] / results['edgessl_fit']['fit_cpu_s']:.2f}x; bank "
              f"{results['anomalib_fit']['bank']} patches both")
    (work / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
