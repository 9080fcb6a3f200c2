"""The bundle the timing benchmarks share: resnet18 (the backbone's own stem for the size), random
init (weights do not change the time), one detector fitted with ``fit``'s defaults, exported, and
INT8 for the CPU attempted. Built once per folder; a second call reuses it.
"""

from __future__ import annotations

import json
from pathlib import Path

def timing_bundle(folder: Path, size: int, channels: int, detector: str = "", data: str = "digits",
                  normal_label: str | None = "0", coreset: int | None = None, int8: bool = True) -> tuple[Path, str | None]:
    """``folder/bundle`` and why it has no int8-cpu model (None: it has one); ``detector`` "" is what
    ``fit`` picks for ``pretrain``'s default method."""
    import torch

    from edgessl.demo import _calibrate
    from edgessl.edge_runtime.preprocess import PreprocessSpec
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.backbones import BackboneConfig, build_backbone
    from edgessl.train.checkpoint import save_model
    from edgessl.train.fit import FitConfig, fit_run

    run, bundle, done = folder / "run", folder / "bundle", folder / "built.json"
    if done.is_file() and (json.loads(done.read_text())["int8"] or not int8):
        return bundle, json.loads(done.read_text())["note"]
    torch.manual_seed(0)
    spec = PreprocessSpec(size, channels, (0.5,) * channels, (0.25,) * channels)
    save_model(run, build_backbone(BackboneConfig("resnet18", channels, size)), spec,
               {"method": "random-init", "data": data})
    fit_run(FitConfig(run=str(run), data=data, normal_label=normal_label,
                      detector=detector or FitConfig.detector, coreset=coreset,
                      device="cpu"))
    export_bundle(ExportConfig(run=str(run), out=str(bundle), verify_images=16, force=True))
    note = _calibrate(bundle, data) if int8 else "not asked for"
    done.write_text(json.dumps({"int8": int8, "note": note}))
    return bundle, note
