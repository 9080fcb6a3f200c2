"""``evaluate --bundle`` (through the runtime) agrees with ``evaluate --run`` (PyTorch) on the same data."""

from __future__ import annotations

import json

import pytest

from edgessl.cli import main

pytestmark = pytest.mark.slow


def _evaluate(capsys, *args) -> dict:
    assert main(["evaluate", *args, "--data", "digits", "--normal-label", "0", "--json", "--no-linear-probe"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_bundle_matches_run_for_fp32(tiny_run, tiny_bundle, capsys):
    run = _evaluate(capsys, "--run", str(tiny_run), "--device", "cpu")
    bundle = _evaluate(capsys, "--bundle", str(tiny_bundle), "--precision", "fp32", "--backend", "ort-cpu")
    shared = set(run) - {"run", "plots"}
    assert shared <= set(bundle), f"missing in --bundle: {shared - set(bundle)}"
    assert bundle["auroc"] == pytest.approx(run["auroc"], abs=1e-4)
    assert bundle["knn_auroc"] == pytest.approx(run["knn_auroc"], abs=1e-4)
    assert bundle["knn_accuracy"] == pytest.approx(run["knn_accuracy"], abs=1e-3)
    assert bundle["threshold"] == run["threshold"] and bundle["test_images"] == run["test_images"]
    assert bundle["fpr_at_threshold"] == pytest.approx(run["fpr_at_threshold"], abs=0.01)
    assert bundle["precision"] == "fp32" and bundle["backend"] == "ort-cpu"


def test_bundle_without_int8_is_refused(tiny_bundle, capsys):
    assert main(["evaluate", "--bundle", str(tiny_bundle), "--precision", "int8", "--backend", "ort-cpu",
                 "--data", "digits", "--json"]) == 2
    assert "no int8-cpu model" in capsys.readouterr().err
