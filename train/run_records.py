"""What a run directory records, read in one place (torch-free): the data it was trained and
fitted on, its detector's folder and fit record, the normal class.

    RUN_DIR/model.json        the pretraining's metadata (``data``, ``method``, ...; ``checkpoint``)
    RUN_DIR/detector/         the fitted detector (``fit``): detector.json|npz, threshold.json, fit.json
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from edgessl.edge_runtime.errors import EdgesslError

DETECTOR_DIR = "detector"


def detector_dir(run: str | Path) -> Path:
    return Path(run) / DETECTOR_DIR


def has_detector(run: str | Path) -> bool:
    return (detector_dir(run) / "detector.json").is_file()


def fit_record(run: str | Path) -> dict:
    """The detector's ``fit.json`` (data, normal label, held-out scores), ``{}`` when there is none."""
    path = detector_dir(run) / "fit.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def fitted_normal_label(run: str | Path) -> str | None:
    return fit_record(run).get("normal_label")


def recorded_data(run: str | Path, detector_first: bool = False) -> str:
    """The data ``run`` records: its detector's (``fit.json``, when ``detector_first``), else the
    pretraining's (``model.json``)."""
    model = Path(run) / "model.json"
    if not model.is_file():
        raise EdgesslError(f"{run}: not a run directory (no model.json; train one with `edgessl pretrain`)")
    records = ([fit_record(run)] if detector_first else []) + [json.loads(model.read_text())]
    for record in records:
        if record.get("data"):
            return str(record["data"])
    raise EdgesslError(f"{run}: the run records no data; give --data")


def with_recorded_data(cfg, detector_first: bool = False):
    """``cfg`` (with ``run`` and ``data`` fields) with ``data`` filled in from the run when it is None."""
    return cfg if cfg.data else replace(cfg, data=recorded_data(cfg.run, detector_first))
