"""The training side's evaluation preprocessing (``train.data.load_uint8`` + ``normalise``) and the
runtime's ``preprocess`` give the same tensor, on real images of several kinds and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from requires import require

from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.data.image_datasets import FileDataset
from edgessl.edge_runtime.preprocess import PreprocessSpec, preprocess_batch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
torch = require("torch", reason="the training side needs torch")


def _files(pattern: str, n: int) -> FileDataset:
    paths = sorted(DATA.glob(pattern))[:n]
    if not paths:
        pytest.skip(f"no files match {pattern} under {DATA}")
    return FileDataset(str(DATA), "test", paths, np.zeros(len(paths)), ["all"])


def _sources():
    if not DATA.is_dir():
        pytest.skip(f"real data not found at {DATA}")
    npz = open_dataset(str(DATA / "pneumoniamnist" / "pneumoniamnist.npz"), "test")
    return {
        "elpv_300px_grey": _files("elpv/fullres_sample/*.png", 3),
        "magnetic_tile_373x248_grey": _files("magnetic_tile/fullres_sample/*.jpg", 3),
        "cifar10_32px_colour": _files("cifar10/test/*/00[0-1]*.jpg", 4),
        "pneumoniamnist_28px_npz": npz.subset(np.arange(4)),
    }


@pytest.mark.parametrize("resize", ["stretch", "shorter_center_crop"])
@pytest.mark.parametrize("size,channels", [(16, 1), (32, 3), (64, 1), (96, 3)])
def test_training_and_runtime_preprocessing_agree(resize, size, channels):
    from edgessl.train.data import load_uint8, normalise

    spec = PreprocessSpec(image_size=size, channels=channels, mean=(0.45,) * channels, std=(0.22,) * channels,
                          resize=resize)
    for name, ds in _sources().items():
        train_side = normalise(load_uint8(ds, spec), spec).numpy()
        runtime = preprocess_batch([ds.image(i) for i in range(len(ds))], spec)
        assert runtime.shape == train_side.shape == (len(ds), channels, size, size), name
        np.testing.assert_allclose(runtime, train_side, rtol=0, atol=1e-5, err_msg=name)
