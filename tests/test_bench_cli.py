"""``edgessl bench``: the runtime, a bare ONNX Runtime session and PyTorch eager in one JSON report."""

from __future__ import annotations

import json

import pytest

from requires import require

from edgessl.cli import main
from runtime_bundle import make_bundle


def _bench(capsys, *args) -> dict:
    assert main(["bench", *args, "--iterations", "5", "--warmup", "1", "--json"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bench_reports_percentiles_throughput_and_overhead(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "knn")
    out = _bench(capsys, "--bundle", str(bundle), "--batch-size", "2")
    assert set(out["results"]) == {"runtime", "bare_ort"}  # no PyTorch run behind this bundle
    for r in out["results"].values():
        assert r["latency_ms"]["p50"] <= r["latency_ms"]["p90"] <= r["latency_ms"]["p99"]
        assert r["images_per_s"] > 0
    assert "runtime_overhead" in out and "runtime_vs_bare_ort" in out["ratios"]
    assert "no PyTorch checkpoint" in out["note"] and out["batch_size"] == 2
    parts = out["breakdown_ms"]
    assert set(parts) == {"preprocess", "inference", "score", "other"}
    assert parts["inference"] > 0 and parts["preprocess"] > 0 and parts["score"] > 0
    assert parts["inference"] <= out["results"]["runtime"]["latency_ms"]["p99"]


def test_bench_table_shows_the_breakdown(tmp_path, capsys):
    bundle = make_bundle(tmp_path / "b", "patch")
    assert main(["bench", "--bundle", str(bundle), "--iterations", "5", "--warmup", "1"]) == 0
    text = capsys.readouterr().out
    assert "runtime call, medians (ms): preprocess" in text and "other" in text


@pytest.mark.slow
def test_bench_adds_pytorch_eager_for_an_exported_bundle(tiny_bundle, capsys):
    require("torch")
    out = _bench(capsys, "--bundle", str(tiny_bundle), "--data", "digits")
    assert set(out["results"]) == {"runtime", "bare_ort", "pytorch_eager"}
    assert out["ratios"]["runtime_vs_pytorch_eager"] > 0
