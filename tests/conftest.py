"""Shared, session-scoped fixtures: a tiny real run and its exported bundle (built once per session).

``tiny_run``: resnet18 pretrained with SimCLR for a few steps on scikit-learn's digits at 16 px
(grey), a knn detector fitted on the normal class 0, its threshold at 15% FPR from held-out normals (19 of them, so 15% FPR at 90% confidence).
``tiny_bundle``: that run exported by ``edgessl export`` (fp32 only; tests that need INT8 calibrate a
copy). Both take about 20 s together on two cores; tests must not modify them (copy first).
``tiny_classifier_run``: a linear probe on ``tiny_run``'s backbone with 10% of the digits' labels
(a head, no detector); ``tiny_classifier_bundle``: it exported with ``--positive-class 3``.
``tiny_detector_classifier_bundle``: that run with a knn detector fitted too, exported (a head and a
detector, no positive class).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from requires import require

TINY_DATA = "digits"
TINY_NORMAL = "0"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    require("torch")
    from edgessl.train.fit import FitConfig, fit_run
    from edgessl.train.pretrain import PretrainConfig, pretrain

    run = tmp_path_factory.mktemp("tiny") / "run"
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    pretrain(PretrainConfig(data=TINY_DATA, method="simclr", image_size=16, batch_size=32, max_steps=2,
                            max_images=256, device="cpu", out=str(run)))
    fit_run(FitConfig(run=str(run), data=TINY_DATA, normal_label=TINY_NORMAL, detector="knn", target_fpr=0.15,
                      device="cpu"))
    return run


@pytest.fixture(scope="session")
def tiny_bundle(tiny_run, tmp_path_factory) -> Path:
    from edgessl.export.bundle_writer import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("tiny_bundle") / "bundle"
    export_bundle(ExportConfig(run=str(tiny_run), out=str(out), verify_images=32))
    return out


TINY_POSITIVE = "3"


@pytest.fixture(scope="session")
def tiny_classifier_run(tiny_run, tmp_path_factory) -> Path:
    from edgessl.train.config import FinetuneConfig
    from edgessl.train.finetune import finetune

    out = tmp_path_factory.mktemp("tiny_classifier") / "run"
    finetune(FinetuneConfig(run=str(tiny_run), data=TINY_DATA, label_fraction=0.1, linear=True, epochs=5,
                            device="cpu", out=str(out)))
    return out


@pytest.fixture(scope="session")
def tiny_classifier_bundle(tiny_classifier_run, tmp_path_factory) -> Path:
    from edgessl.export.bundle_writer import ExportConfig, export_bundle

    out = tmp_path_factory.mktemp("tiny_classifier_bundle") / "bundle"
    export_bundle(ExportConfig(run=str(tiny_classifier_run), out=str(out), verify_images=32,
                               positive_class=TINY_POSITIVE))
    return out


@pytest.fixture(scope="session")
def tiny_detector_classifier_bundle(tiny_classifier_run, tmp_path_factory) -> Path:
    from edgessl.export.bundle_writer import ExportConfig, export_bundle
    from edgessl.train.fit import FitConfig, fit_run

    root = tmp_path_factory.mktemp("tiny_detector_classifier")
    run = root / "run"
    shutil.copytree(tiny_classifier_run, run)
    fit_run(FitConfig(run=str(run), data=TINY_DATA, normal_label=TINY_NORMAL, detector="knn", target_fpr=0.15,
                      device="cpu"))
    export_bundle(ExportConfig(run=str(run), out=str(root / "bundle"), verify_images=16))
    return root / "bundle"
