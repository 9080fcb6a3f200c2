"""Labelled and unlabelled image collections, read without torch.

``open_dataset(source, split)`` understands:

* ``digits``: scikit-learn's built-in 8x8 digits (the embedded default);
* a MedMNIST ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``);
* an MVTec-AD directory (``train/good``, ``test/<class>``, optional ``ground_truth/<class>/*_mask.png``);
* an ImageFolder directory (``<split>/<class>/*`` or ``<class>/*``);
* a plain folder of unlabelled images;
* the user's own data (``user_data.open_source_dataset``): a video, a ROS 2 bag, DICOM, a
  ``.csv``/``.txt`` list of files with optional labels, or nested folders of these, with frame
  selection options in the source string (``source_text``: ``run.mp4?every=5``).

Splits are ``train``, ``val`` and ``test``. A source without a ``val`` split gets one carved
deterministically from ``train`` (``VAL_FRACTION``); a source without any split gets all three
carved from its images. Unlabelled images carry label ``-1``.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from ..errors import EdgesslError
from ..images import files_in
from .image_datasets import UNLABELLED, ArrayDataset, FileDataset, ImageDataset
from .registry import claiming
from .source_text import SourceOptions, parse_source

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.15
TEST_FRACTION = 0.25


def _carve(n: int, fractions: dict[str, float], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic disjoint index sets: each named split gets its fraction, the rest is train."""
    order = np.random.RandomState(seed).permutation(n)
    out, start = {}, 0
    for split, frac in fractions.items():
        k = int(round(n * frac))
        out[split] = np.sort(order[start : start + k])
        start += k
    out["train"] = np.sort(order[start:])
    return out


def _with_carved_val(train: ImageDataset, split: str) -> ImageDataset:
    """``train`` or ``val``: a deterministic ``VAL_FRACTION`` of ``train`` held out as ``val``."""
    parts = _carve(len(train), {"val": VAL_FRACTION})
    ds = train.subset(parts[split])
    ds.split = split
    return ds


def _carved_split(full: ImageDataset, split: str) -> ImageDataset:
    parts = _carve(len(full), {"val": VAL_FRACTION, "test": TEST_FRACTION})
    ds = full.subset(parts[split])
    ds.split = split
    return ds


def _digits(split: str) -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
    full = ArrayDataset("digits", "all", images, d.target, [str(c) for c in range(10)])
    return _carved_split(full, split)


def _npz(path: Path, split: str) -> ImageDataset:
    try:
        data = np.load(path, allow_pickle=False)
        keys = set(data.files)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise EdgesslError(f"{path}: not a readable .npz file ({exc or type(exc).__name__})") from None
    if "train_images" not in keys:
        raise EdgesslError(f"{path}: a MedMNIST .npz needs 'train_images' (found {sorted(keys)})")

    def load(s: str) -> ImageDataset:
        try:
            images = data[f"{s}_images"]
            labels = data[f"{s}_labels"].reshape(len(images), -1)[:, 0] if f"{s}_labels" in keys else \
                np.full(len(images), UNLABELLED)
            n_classes = int(data["train_labels"].max()) + 1 if "train_labels" in keys else 0
        except (OSError, ValueError, TypeError, EOFError, KeyError, IndexError, zipfile.BadZipFile) as exc:
            raise EdgesslError(f"{path}: {s} split unreadable ({str(exc).splitlines()[0] if str(exc) else exc!r})") \
                from None
        if images.ndim not in (3, 4) or images.dtype.kind not in "uifb" or labels.dtype.kind not in "uib" or \
                not 0 <= n_classes <= 1 << 16:
            raise EdgesslError(f"{path}: {s}_images must be N x H x W[ x C] numbers with integer labels "
                               f"(got {images.shape}, {images.dtype}, labels {labels.dtype})")
        return ArrayDataset(str(path), s, images, labels, [str(c) for c in range(n_classes)])

    if split == "train" and "val_images" not in keys:  # val is carved from train: keep them disjoint
        return _with_carved_val(load("train"), "train")
    if f"{split}_images" in keys:
        return load(split)
    if split == "test":
        raise EdgesslError(f"{path}: has no 'test_images'")
    return _with_carved_val(load("train"), split)


def _images_in(folder: Path) -> list[Path]:
    return files_in(folder, recursive=False)


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _images_in(p))


def _image_folder(root: Path, split_dir: Path, split: str, classes: list[str]) -> FileDataset:
    paths, labels = [], []
    for label, cls in enumerate(classes):
        d = split_dir / cls
        if d.is_dir():
            files = _images_in(d)
            paths += files
            labels += [label] * len(files)
    return FileDataset(str(root), split, paths, np.asarray(labels), classes)


def _mvtec(root: Path, split: str) -> ImageDataset:
    test_classes = [p.name for p in _class_dirs(root / "test")] if (root / "test").is_dir() else []
    classes = ["good"] + sorted(c for c in test_classes if c != "good")
    if split in ("train", "val"):
        train = _image_folder(root, root / "train", "train", classes)
        return _with_carved_val(train, split)
    ds = _image_folder(root, root / "test", "test", classes)
    gt = root / "ground_truth"
    if gt.is_dir():
        masks: list[Path | None] = []
        for p, label in zip(ds.paths, ds.labels):
            m = gt / classes[label] / f"{p.stem}_mask.png"
            masks.append(m if label != 0 and m.is_file() else None)
        if any(m is not None for m in masks):
            ds.mask_paths = masks
    return ds


def detect_kind(source: str) -> str:
    """One of ``digits``, ``npz``, ``mvtec``, ``imagefolder_splits``, ``imagefolder``, ``folder``,
    or ``user_data`` (videos, bags, DICOM, lists, nested folders: ``user_data.open_source_dataset``)."""
    source = parse_source(source)[0]
    if source == "digits":
        return "digits"
    path = Path(source)
    if not path.exists():
        raise EdgesslError(f"data source not found: {source} (give 'digits', a .npz, a folder, a video, a ROS 2 bag, "
                           "DICOM, or a .csv/.txt list)")
    if path.is_file():
        return "npz" if path.suffix.lower() == ".npz" else "user_data"
    if claiming(path) is not None:  # a bag directory
        return "user_data"
    if (path / "train" / "good").is_dir():
        return "mvtec"
    if any((path / s).is_dir() and _class_dirs(path / s) for s in SPLITS):
        return "imagefolder_splits"
    if _class_dirs(path):
        return "imagefolder"
    if _images_in(path) and not any(p.is_dir() for p in path.iterdir()):
        return "folder"
    return "user_data"


def open_dataset(source: str, split: str = "train") -> ImageDataset:
    """Open one split of a data source. Raises ``EdgesslError`` for anything unusable."""
    if split not in SPLITS:
        raise EdgesslError(f"unknown split {split!r}; use one of {SPLITS}")
    kind = detect_kind(source)
    path_text, options = parse_source(source)
    if kind == "user_data":
        return _own_data_split(source, split)
    if options != SourceOptions():
        raise EdgesslError(f"{source}: frame selection and DICOM options apply to videos, bags and DICOM, "
                           f"not to a {kind} source")
    ds = _classic_split(kind, Path(path_text), split)
    if len(ds) == 0:
        raise EdgesslError(f"{source}: the '{split}' split is empty")
    return ds


def _own_data_split(source: str, split: str) -> ImageDataset:
    """A carved split of a video, bag, DICOM, list or nested folder; too few frames name the option."""
    from .frame_selection import selection_error
    from .user_data import open_source_dataset

    full = open_source_dataset(source)
    ds = _carved_split(full, split)
    if len(ds) == 0:
        raise selection_error(full.report, f"too few for a '{split}' split")
    return ds


def _classic_split(kind: str, root: Path, split: str) -> ImageDataset:
    source = str(root)
    if kind == "digits":
        ds = _digits(split)
    elif kind == "npz":
        ds = _npz(root, split)
    elif kind == "mvtec":
        ds = _mvtec(root, split)
    elif kind == "imagefolder_splits":
        classes = sorted({p.name for s in SPLITS if (root / s).is_dir() for p in _class_dirs(root / s)})
        if (root / split).is_dir():
            ds = _image_folder(root, root / split, split, classes)
        elif split == "val" and (root / "train").is_dir():
            ds = _with_carved_val(_image_folder(root, root / "train", "train", classes), "val")
        else:
            raise EdgesslError(f"{source}: has no '{split}' split")
        if split == "train" and not (root / "val").is_dir():
            ds = _with_carved_val(ds, "train")
    elif kind == "imagefolder":
        classes = [p.name for p in _class_dirs(root)]
        ds = _carved_split(_image_folder(root, root, "all", classes), split)
    else:
        paths = _images_in(root)
        ds = _carved_split(FileDataset(str(root), "all", paths, np.full(len(paths), UNLABELLED), []), split)
    return ds


def resolve_label(ds: ImageDataset, label: str | int) -> int:
    """A class given by index or by name (``good``, ``normal``, ``3``) to its index."""
    text = str(label)
    if text in ds.class_names:
        return ds.class_names.index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(ds.class_names):
        return int(text)
    known = ", ".join(ds.class_names) or "none: the data is unlabelled"
    raise EdgesslError(f"label {text!r} is not in {ds.source} (classes: {known})")


def class_indices(ds: ImageDataset, label: str | int | None) -> np.ndarray:
    """Indices of the images of class ``label`` (an ``int`` class index, or a name or index as text,
    see ``resolve_label``); every index when ``label`` is None or ``ds`` is unlabelled."""
    if label is None or not ds.labelled:
        return np.arange(len(ds))
    return np.flatnonzero(ds.labels == (label if isinstance(label, (int, np.integer)) else resolve_label(ds, label)))


def drop_labels(ds: ImageDataset, names: list[str]) -> ImageDataset:
    """``ds`` without the images of the named classes (e.g. ELPV's ``uncertain``)."""
    if not names:
        return ds
    ignored = [resolve_label(ds, n) for n in names]
    return ds.subset(np.flatnonzero(~np.isin(ds.labels, ignored)))
