"""``edgessl demo`` end to end with the smallest settings: every stage runs and the table is printed."""

from __future__ import annotations

import json

import pytest

from requires import require

from edgessl.cli import main

pytestmark = pytest.mark.slow


def test_demo_runs_the_whole_pipeline(tmp_path, capsys):
    require("torch")
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--image-size", "16", "--budget", "1", "--bench-iterations", "3",
               "--device", "cpu"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "runtime fp32" in text and f"bundle: {out / 'bundle'}" in text
    fig = json.loads((out / "demo.json").read_text())
    assert (out / "bundle" / "manifest.json").is_file()
    assert fig["evaluate_fp32"]["auroc"] == pytest.approx(fig["evaluate_run"]["auroc"], abs=1e-4)
    assert fig["int8_note"] is not None or "runtime int8-cpu" in text
    assert all((out / "plots" / p).is_file() for p in ("roc.png", "histogram.png"))
