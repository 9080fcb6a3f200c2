"""``edgessl demo``: the whole pipeline in one command, on the built-in digits or on ``--data``.

pretrain (the default pretext task, a time budget) -> fit a detector on the normal class -> export a verified bundle
-> calibrate INT8 for the CPU -> evaluate fp32 and INT8 through the torch-free runtime -> bench
(runtime vs bare ONNX Runtime vs PyTorch eager) -> a short table, and where the bundle, the plots
and ``demo.json`` (every figure) are. Each step calls that stage's Python function.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.train.config import ComputeOptions, FitConfig, PretrainConfig

DEFAULT_NORMAL = {"digits": "0"}


@dataclass
class DemoConfig:
    """The demo's data and its normal class (None: ``DEFAULT_NORMAL``'s for the data), where it
    writes, what it trains (``pretrain``'s defaults) for ``budget`` seconds, the detector and its
    target (``fit``'s defaults), the bench's timed calls and the PyTorch device."""

    data: str = PretrainConfig.data
    normal_label: str | None = None
    out: str = "runs/demo"
    method: str = PretrainConfig.method
    backbone: str = PretrainConfig.backbone
    image_size: int = PretrainConfig.image_size
    budget: float = 90.0
    detector: str = FitConfig.detector
    target_fpr: float = FitConfig.target_fpr
    bench_iterations: int = 30
    device: str = ComputeOptions.device


def _step(name: str, log: list[str]):
    print(f"[demo] {name} ...", file=sys.stderr, flush=True)
    log.append(name)
    return time.perf_counter()


def _calibrate(bundle: Path, data: str) -> str | None:
    """INT8 for the CPU; None when it worked, else why not (the demo goes on with fp32)."""
    try:
        from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle
    except ImportError as exc:
        return f"INT8 calibration unavailable ({exc})"
    try:
        calibrate_bundle(CalibrateConfig(bundle=str(bundle), data=data, target="cpu"))
    except EdgesslError as exc:
        return f"INT8 calibration refused: {exc}"
    return None


def run_demo(cfg: DemoConfig) -> dict:
    """Every step above; returns the figures (also written to OUT/demo.json)."""
    from edgessl.bench import BenchConfig, bench
    from edgessl.edge_runtime.streams.evaluation import BundleEvalConfig, evaluate_bundle
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.evaluate import EvaluateConfig, evaluate_run
    from edgessl.train.fit import FitConfig, fit_run
    from edgessl.train.pretrain import PretrainConfig, pretrain

    normal = cfg.normal_label if cfg.normal_label is not None else DEFAULT_NORMAL.get(cfg.data)
    if normal is None:
        raise EdgesslError(f"say which class of {cfg.data} is normal with --normal-label")
    out = Path(cfg.out)
    run, bundle, plots = out / "run", out / "bundle", out / "plots"
    log: list[str] = []
    figures: dict = {"data": cfg.data, "normal_label": normal, "config": asdict(cfg)}
    size = f"{cfg.image_size} px" if cfg.image_size else "the data's own size"
    t = _step(f"pretrain {cfg.method} {cfg.backbone} at {size} for {cfg.budget:g} s", log)
    figures["pretrain"] = pretrain(PretrainConfig(data=cfg.data, method=cfg.method, backbone=cfg.backbone,
                                                  image_size=cfg.image_size, epochs=20,
                                                  time_budget=cfg.budget,
                                                  device=cfg.device, out=str(run)))
    figures["pretrain_s"] = round(time.perf_counter() - t, 1)
    _step(f"fit a {cfg.detector} detector on class {normal}", log)
    figures["fit"] = fit_run(FitConfig(run=str(run), data=cfg.data, normal_label=normal, detector=cfg.detector,
                                       target_fpr=cfg.target_fpr, device=cfg.device))
    _step("evaluate the run (PyTorch) and draw plots", log)
    figures["evaluate_run"] = evaluate_run(EvaluateConfig(run=str(run), data=cfg.data, normal_label=normal,
                                                          linear_probe=False, device=cfg.device, plots=str(plots)))
    _step("export a verified bundle", log)
    export_bundle(ExportConfig(run=str(run), out=str(bundle), force=True))
    _step("calibrate INT8 for the CPU", log)
    figures["int8_note"] = _calibrate(bundle, cfg.data)
    precisions = ["fp32"] if figures["int8_note"] else ["fp32", "int8"]
    for p in precisions:
        _step(f"evaluate the bundle through the runtime ({p})", log)
        figures[f"evaluate_{p}"] = evaluate_bundle(BundleEvalConfig(bundle=str(bundle), data=cfg.data,
                                                                    normal_label=normal, precision=p,
                                                                    backend="ort-cpu"))
        _step(f"bench ({p}, batch 1)", log)
        figures[f"bench_{p}"] = bench(BenchConfig(bundle=str(bundle), backend="ort-cpu", precision=p,
                                                  iterations=cfg.bench_iterations, data=cfg.data))
    figures.update(bundle=str(bundle), plots=figures["evaluate_run"].get("plots", []), run=str(run))
    (out / "demo.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures


def summary_table(fig: dict) -> str:
    """The demo's few figures, one row per model."""
    run = fig["evaluate_run"]
    rows = [f"edgessl demo: {fig['data']}, normal class {fig['normal_label']}",
            f"{'model':<22} {'AUROC':>7} {'FPR@thr':>8} {'TPR@thr':>8} {'p50 ms':>8} {'images/s':>9} {'vs eager':>9}",
            f"{'PyTorch run':<22} {run['auroc']:>7.3f} {run.get('fpr_at_threshold', float('nan')):>8.3f} "
            f"{run.get('tpr_at_threshold', float('nan')):>8.3f} {'':>8} {'':>9} {'':>9}"]
    for p in ("fp32", "int8"):
        if f"evaluate_{p}" not in fig:
            continue
        ev, b = fig[f"evaluate_{p}"], fig[f"bench_{p}"]
        rt = b["results"]["runtime"]
        eager = b["results"].get("pytorch_eager")
        vs = f"{rt['images_per_s'] / eager['images_per_s']:.2f}x" if eager else "-"
        rows.append(f"{'runtime ' + ev['precision']:<22} {ev['auroc']:>7.3f} {ev['fpr_at_threshold']:>8.3f} "
                    f"{ev['tpr_at_threshold']:>8.3f} {rt['latency_ms']['p50']:>8.2f} {rt['images_per_s']:>9.1f} {vs:>9}")
    if fig.get("int8_note"):
        rows.append(f"note: {fig['int8_note']}")
    rows += [f"bundle: {fig['bundle']}", f"plots:  {', '.join(fig['plots']) or '-'}",
             f"all figures: {Path(fig['bundle']).parent / 'demo.json'}",
             f"next: edgessl run --bundle {fig['bundle']} --source IMAGES_OR_CAMERA --out results.jsonl"]
    return "\n".join(rows)
