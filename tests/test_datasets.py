"""Every data source kind, built small in tmp_path with real files, plus the real sets in ../shared/data."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from edgessl.edge_runtime.data.datasets import detect_kind, open_dataset, resolve_label
from edgessl.edge_runtime.data.image_datasets import UNLABELLED
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.images import read_image
from edgessl.edge_runtime.preprocess import PreprocessSpec, resize_image

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(rel: str) -> Path:
    path = SHARED / rel
    if not path.exists():
        pytest.skip(f"{path} is not here (real data lives in ../shared/data)")
    return path


def write_images(folder: Path, n: int, colour: bool = False, value: int = 0, size=(12, 10)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        shape = (*size, 3) if colour else size
        img = np.full(shape, (value + 17 * i) % 256, np.uint8)
        paths.append(folder / f"img_{i:03d}.png")
        cv2.imwrite(str(paths[-1]), img)
    return paths


def names(ds) -> set[str]:
    return {ds.name(i) for i in range(len(ds))}


def test_digits_splits_are_disjoint_and_labelled():
    parts = {s: open_dataset("digits", s) for s in ("train", "val", "test")}
    assert sum(len(d) for d in parts.values()) == 1797
    assert not names(parts["train"]) & names(parts["test"]) and not names(parts["val"]) & names(parts["test"])
    assert all(d.labelled and d.class_names == [str(c) for c in range(10)] for d in parts.values())
    assert parts["train"].image(0).shape == (8, 8) and parts["train"].image(0).dtype == np.uint8


@pytest.mark.parametrize("label_shape", ["flat", "column"])
def test_npz_labels_flat_or_column(tmp_path, label_shape):
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 3, 40)
    shaped = labels if label_shape == "flat" else labels[:, None]
    path = tmp_path / "set.npz"
    np.savez(path, train_images=rng.randint(0, 255, (40, 28, 28), dtype=np.uint8), train_labels=shaped,
             test_images=rng.randint(0, 255, (10, 28, 28, 3), dtype=np.uint8), test_labels=shaped[:10])
    assert detect_kind(str(path)) == "npz"
    train, val, test = (open_dataset(str(path), s) for s in ("train", "val", "test"))
    assert len(train) + len(val) == 40 and len(test) == 10  # no val_images: val carved from train
    assert set(train.labels) | set(val.labels) <= {0, 1, 2} and train.class_names == ["0", "1", "2"]
    np.testing.assert_array_equal(test.labels, labels[:10])
    assert test.image(0).shape == (28, 28, 3)


def test_imagefolder_with_splits(tmp_path):
    for split, n in (("train", 6), ("test", 3)):
        write_images(tmp_path / split / "cat", n)
        write_images(tmp_path / split / "dog", n, colour=True)
    assert detect_kind(str(tmp_path)) == "imagefolder_splits"
    train, val, test = (open_dataset(str(tmp_path), s) for s in ("train", "val", "test"))
    assert train.class_names == ["cat", "dog"] and len(test) == 6
    assert len(train) + len(val) == 12 and not names(train) & names(val)
    assert sorted(set(test.labels)) == [0, 1]
    assert test.image(int(np.flatnonzero(test.labels == 1)[0])).shape == (12, 10, 3)
    assert resolve_label(test, "dog") == 1 and resolve_label(test, 0) == 0


def test_imagefolder_without_splits(tmp_path):
    write_images(tmp_path / "a", 10)
    write_images(tmp_path / "b", 10)
    assert detect_kind(str(tmp_path)) == "imagefolder"
    parts = [open_dataset(str(tmp_path), s) for s in ("train", "val", "test")]
    assert sum(len(p) for p in parts) == 20 and all(p.labelled for p in parts)
    assert not names(parts[0]) & names(parts[2])


def test_mvtec_with_masks(tmp_path):
    write_images(tmp_path / "train" / "good", 8)
    write_images(tmp_path / "test" / "good", 2)
    defects = write_images(tmp_path / "test" / "crack", 2, value=100)
    masks = tmp_path / "ground_truth" / "crack"
    masks.mkdir(parents=True)
    for p in defects:
        m = np.zeros((12, 10), np.uint8)
        m[2:5, 3:6] = 255
        cv2.imwrite(str(masks / f"{p.stem}_mask.png"), m)
    assert detect_kind(str(tmp_path)) == "mvtec"
    train, test = open_dataset(str(tmp_path), "train"), open_dataset(str(tmp_path), "test")
    assert set(train.labels) == {0} and test.class_names == ["good", "crack"] and test.has_masks
    for i in range(len(test)):
        mask = test.mask(i)
        assert mask.shape == (12, 10)
        assert (mask.sum() == 0) == (test.labels[i] == 0)
    assert resolve_label(test, "good") == 0


def test_plain_folder_is_unlabelled(tmp_path):
    write_images(tmp_path, 12, colour=True)
    assert detect_kind(str(tmp_path)) == "folder"
    ds = open_dataset(str(tmp_path), "train")
    assert (ds.labels == UNLABELLED).all() and not ds.labelled
    with pytest.raises(EdgesslError, match="not in"):
        resolve_label(ds, "0")


def test_grey_colour_and_sixteen_bit_conversion(tmp_path):
    grey16 = (np.arange(20 * 24, dtype=np.uint32).reshape(20, 24) * 130).astype(np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), grey16)
    bgr = np.zeros((20, 24, 3), np.uint8)
    bgr[..., 2] = 255  # red in OpenCV's order
    cv2.imwrite(str(tmp_path / "red.png"), bgr)
    g16 = read_image(tmp_path / "g16.png")
    assert g16.dtype == np.uint16 and g16.ndim == 2
    red = read_image(tmp_path / "red.png")
    assert (red[..., 0] == 255).all() and (red[..., 2] == 0).all()  # RGB order after reading
    grey_spec = PreprocessSpec(16, 1, (0.5,), (0.25,))
    colour_spec = PreprocessSpec(16, 3, (0.5,) * 3, (0.25,) * 3)
    out = resize_image(g16, grey_spec)
    assert out.shape == (16, 16) and out.dtype == np.uint8 and out.max() > 200  # 16-bit scaled down, not clipped
    assert resize_image(g16, colour_spec).shape == (16, 16, 3)
    assert resize_image(red, grey_spec).mean() == pytest.approx(76, abs=1)  # luminance of pure red


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(EdgesslError, match="not found"):
        open_dataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(EdgesslError, match="no images"):
        open_dataset(str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes(b"\x89PNG not really")
    ds = open_dataset(str(tmp_path / "bad"), "train")
    with pytest.raises(EdgesslError, match="not a readable image"):
        ds.image(0)
    (tmp_path / "x.bin").write_text("hi")
    with pytest.raises(EdgesslError, match="npz"):
        open_dataset(str(tmp_path / "x.bin"))


@pytest.mark.parametrize("rel, kind, train_len, test_len, classes", [
    ("breastmnist/breastmnist.npz", "npz", 546, 156, 2),
    ("pneumoniamnist/pneumoniamnist.npz", "npz", 4708, 624, 2),
    ("elpv/solar_cell", "mvtec", None, None, None),
    ("magnetic_tile/tile", "mvtec", None, None, None),
    ("cifar10", "imagefolder_splits", None, 10000, 10),
])
def test_real_sets(rel, kind, train_len, test_len, classes):
    path = shared(rel)
    assert detect_kind(str(path)) == kind
    train, test = open_dataset(str(path), "train"), open_dataset(str(path), "test")
    if train_len:
        assert len(train) == train_len
    if test_len:
        assert len(test) == test_len
    if classes:
        assert len(train.class_names) == classes
    assert test.labelled and train.image(0).ndim in (2, 3)
    if kind == "mvtec":
        assert set(train.labels) == {0} and test.class_names[0] == "good"


def test_real_mvtec_masks():
    test = open_dataset(str(shared("magnetic_tile/tile")), "test")
    assert test.has_masks
    i = int(np.flatnonzero(test.labels != 0)[0])
    assert test.mask(i).shape == test.image(i).shape[:2] and test.mask(i).max() > 0
