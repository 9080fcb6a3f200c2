"""The runtime works where torch cannot be imported: a subprocess whose import system refuses torch."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime_bundle import make_bundle
from torch_blocker import blocked_site

FORBIDDEN = ("torch", "torchvision", "edgessl.train", "edgessl.export", "edgessl.calibration")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle"), "patch")


def _run_blocked(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(blocked_site(tmp_path)), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=120)


def test_blocker_really_blocks_torch(tmp_path):
    proc = _run_blocked("import torch", tmp_path)
    assert proc.returncode != 0 and "blocked in this test" in proc.stderr


def test_load_and_score_without_torch(bundle, tmp_path):
    img = tmp_path / "img.png"
    cv2.imwrite(str(img), np.random.RandomState(0).randint(0, 255, (30, 20), dtype=np.uint8))
    code = f"""
    import json, sys
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl.edge_runtime.images import read_image
    from edgessl.edge_runtime import timing
    from edgessl.edge_runtime.streams import sources, sinks, runner, evaluation
    from edgessl.edge_runtime.medical import triage
    pipe = Pipeline.load({str(bundle)!r})
    r = pipe.score(read_image({str(img)!r}), with_features=True)
    loaded = sorted(m for m in sys.modules if m.startswith({FORBIDDEN!r}))
    from edgessl.cli import main  # every command's options and handlers (torch-free until a handler runs)
    rc = main(["run", "--bundle", {str(bundle)!r}, "--source", {str(img)!r}, "--out", {str(tmp_path / 'r.jsonl')!r}])
    loaded += sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))
    print(json.dumps({{"score": r.score, "map": list(r.anomaly_map.shape), "features": len(r.features),
                      "rc": rc, "loaded": loaded}}))
    """
    proc = _run_blocked(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == 0 and out["map"] == [30, 20] and out["features"] == 8 and out["loaded"] == []
    assert json.loads((tmp_path / "r.jsonl").read_text())["error"] is None


@pytest.mark.slow
def test_exported_resnet_bundle_scores_without_torch(tiny_bundle, tmp_path):
    """The bundle `edgessl export` wrote (resnet18 + knn) loads and scores with torch blocked, and gives the
    scores the same runtime gives with torch importable."""
    from edgessl.edge_runtime.data.datasets import open_dataset
    from edgessl.edge_runtime.pipeline import Pipeline

    ds = open_dataset("digits", "test")
    images = np.stack([ds.image(i) for i in range(6)])
    np.save(tmp_path / "images.npy", images)
    code = f"""
    import json, numpy as np
    from edgessl.edge_runtime.pipeline import Pipeline
    pipe = Pipeline.load({str(tiny_bundle)!r}, backend="ort-cpu")
    print(json.dumps([r.raw_score for r in pipe.score_batch(list(np.load({str(tmp_path / 'images.npy')!r})))]))
    """
    proc = _run_blocked(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    blocked = json.loads(proc.stdout.strip().splitlines()[-1])
    here = [r.raw_score for r in Pipeline.load(tiny_bundle, backend="ort-cpu").score_batch(list(images))]
    np.testing.assert_allclose(blocked, here, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_classifier_bundle_runs_triages_and_evaluates_without_torch(tiny_classifier_bundle, tmp_path):
    """A fine-tuned run's bundle (a head, no detector): `run` records carry the class, `triage` ranks by the
    positive class's probability and `evaluate_bundle` reports the classifier, with torch blocked."""
    img = tmp_path / "imgs"
    img.mkdir()
    cv2.imwrite(str(img / "a.png"), np.random.RandomState(0).randint(0, 255, (30, 20), dtype=np.uint8))
    code = f"""
    import json, sys
    from edgessl.cli import main
    from edgessl.edge_runtime.streams.evaluation import BundleEvalConfig, evaluate_bundle
    rc = [main(["run", "--bundle", {str(tiny_classifier_bundle)!r}, "--source", {str(img)!r}, "--out",
                {str(tmp_path / 'r.jsonl')!r}]),
          main(["triage", "--bundle", {str(tiny_classifier_bundle)!r}, "--source", {str(img)!r}, "--out",
                {str(tmp_path / 't')!r}])]
    accuracy = evaluate_bundle(BundleEvalConfig(bundle={str(tiny_classifier_bundle)!r}))["classification"]["accuracy"]
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision"))  # the CLI holds configs
    print(json.dumps({{"rc": rc, "accuracy": accuracy, "loaded": loaded}}))
    """
    proc = _run_blocked(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["rc"] == [0, 0] and 0.3 < out["accuracy"] <= 1 and out["loaded"] == []
    record = json.loads((tmp_path / "r.jsonl").read_text())
    assert record["class"] in record["probabilities"] and record["score"] is None
    assert (tmp_path / "t" / "worklist.csv").is_file()
