"""Labelled and unlabelled image collections, read without torch.

``open_dataset(source, split)`` understands:

* ``digits``: scikit-learn's built-in 8x8 digits (the embedded default);
* a MedMNIST ``.npz`` (``train_images``, ``train_labels``, ``val_*``, ``test_*``);
* an MVTec-AD directory (``train/good``, ``test/<class>``, optional ``ground_truth/<class>/*_mask.png``);
* an ImageFolder directory (``<split>/<class>/*`` or ``<class>/*``);
* a plain folder of unlabelled images;
* the user's own data (``sources.open_source_dataset``): a video, a ROS 2 bag, DICOM, a
  ``.csv``/``.txt`` list of files with optional labels, or nested folders of these, with frame
  selection options in the source string (``source_text``: ``run.mp4?every=5``).

Splits are ``train``, ``val`` and ``test``. A source without a ``val`` split gets one carved
deterministically from ``train`` (``VAL_FRACTION``); a source without any split gets all three
carved from its images. Unlabelled images carry label ``-1``.
"""

from __future__ import annotations

import hashlib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgesslError
from ..images import canonical_image, files_in, read_image
from .cache import digest, file_identity
from .registry import claiming
from .report import SourceReport
from .source_text import SourceOptions, parse_source

SPLITS = ("train", "val", "test")
VAL_FRACTION = 0.15
TEST_FRACTION = 0.25
UNLABELLED = -1


@dataclass(frozen=True)
class Sample:
    image: np.ndarray  # HxW or HxWx3 RGB, uint8/uint16
    label: int  # UNLABELLED when the source has no labels
    name: str  # file path, or "<source>:<split>:<index>"
    mask: np.ndarray | None = None  # HxW uint8, >0 where anomalous


class ImageDataset:
    """A split of a source: images by index, their labels, class names, optional masks.

    ``identity()`` names exactly which images these are (files with their sizes and times, the
    indices chosen), for cache keys; ``report`` says what reading the source skipped (or None).
    """

    report: SourceReport | None = None

    def __init__(self, source: str, split: str, labels: np.ndarray, class_names: list[str]):
        self.source = source
        self.split = split
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = class_names

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, i: int) -> np.ndarray:
        raise NotImplementedError

    def name(self, i: int) -> str:
        return f"{self.source}:{self.split}:{i}"

    def identity(self) -> str:
        raise NotImplementedError

    def mask(self, i: int) -> np.ndarray | None:
        return None

    @property
    def has_masks(self) -> bool:
        return False

    @property
    def labelled(self) -> bool:
        return bool(len(self.labels)) and bool((self.labels != UNLABELLED).all())

    def sample(self, i: int) -> Sample:
        return Sample(self.image(i), int(self.labels[i]), self.name(i), self.mask(i))

    def subset(self, indices: np.ndarray) -> "ImageDataset":
        return SubsetDataset(self, np.asarray(indices, dtype=np.int64))


class ArrayDataset(ImageDataset):
    """Images held in one array (N x H x W or N x H x W x C)."""

    def __init__(self, source, split, images: np.ndarray, labels, class_names):
        super().__init__(source, split, labels, class_names)
        self.images = images

    def image(self, i: int) -> np.ndarray:
        return canonical_image(self.images[i], name=self.name(i))

    def identity(self) -> str:
        files = file_identity([Path(self.source)]) if Path(self.source).is_file() else self.source
        return digest([files, self.split, self.images.shape])


class FileDataset(ImageDataset):
    """Images read from files on demand; masks from files where given."""

    def __init__(self, source, split, paths: list[Path], labels, class_names,
                 mask_paths: list[Path | None] | None = None):
        super().__init__(source, split, labels, class_names)
        self.paths = paths
        self.mask_paths = mask_paths

    def image(self, i: int) -> np.ndarray:
        return read_image(self.paths[i])

    def name(self, i: int) -> str:
        return str(self.paths[i])

    def identity(self) -> str:
        return digest(file_identity(self.paths))

    @property
    def has_masks(self) -> bool:
        return self.mask_paths is not None and any(p is not None for p in self.mask_paths)

    def mask(self, i: int) -> np.ndarray | None:
        if self.mask_paths is None:
            return None
        path = self.mask_paths[i]
        if path is None:  # a normal image: an all-zero mask of its size
            return np.zeros(self.image(i).shape[:2], np.uint8)
        m = read_image(path)
        return (m if m.ndim == 2 else m.max(axis=2)).astype(np.uint8)


class SubsetDataset(ImageDataset):
    """A view of some indices of another dataset."""

    def __init__(self, parent: ImageDataset, indices: np.ndarray):
        super().__init__(parent.source, parent.split, parent.labels[indices], parent.class_names)
        self.parent, self.indices = parent, indices
        self.report = parent.report

    def identity(self) -> str:
        return digest([self.parent.identity(), hashlib.sha256(self.indices.astype("<i8").tobytes()).hexdigest()])

    def image(self, i: int) -> np.ndarray:
        return self.parent.image(int(self.indices[i]))

    def name(self, i: int) -> str:
        return self.parent.name(int(self.indices[i]))

    def mask(self, i: int) -> np.ndarray | None:
        return self.parent.mask(int(self.indices[i]))

    @property
    def has_masks(self) -> bool:
        return self.parent.has_masks


class ConcatDataset(ImageDataset):
    """Several datasets one after the other, sharing ``class_names``."""

    def __init__(self, source: str, parts: list[ImageDataset], class_names: list[str]):
        labels = np.concatenate([p.labels for p in parts]) if parts else np.zeros(0, np.int64)
        super().__init__(source, "all", labels, class_names)
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def _locate(self, i: int) -> tuple[ImageDataset, int]:
        k = int(np.searchsorted(self.starts, i, side="right")) - 1
        return self.parts[k], i - int(self.starts[k])

    def image(self, i: int) -> np.ndarray:
        part, j = self._locate(i)
        return part.image(j)

    def name(self, i: int) -> str:
        part, j = self._locate(i)
        return part.name(j)

    def identity(self) -> str:
        return digest([p.identity() for p in self.parts])


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
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise EdgesslError(f"{path}: not a readable .npz file ({exc})") from None
    if "train_images" not in keys:
        raise EdgesslError(f"{path}: a MedMNIST .npz needs 'train_images' (found {sorted(keys)})")

    def load(s: str) -> ImageDataset:
        images = data[f"{s}_images"]
        labels = data[f"{s}_labels"].reshape(len(images), -1)[:, 0] if f"{s}_labels" in keys else \
            np.full(len(images), UNLABELLED)
        n_classes = int(data["train_labels"].max()) + 1 if "train_labels" in keys else 0
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
    or ``sources`` (videos, bags, DICOM, lists, nested folders: ``sources.open_source_dataset``)."""
    source = parse_source(source)[0]
    if source == "digits":
        return "digits"
    path = Path(source)
    if not path.exists():
        raise EdgesslError(f"data source not found: {source} (give 'digits', a .npz, a folder, a video, a ROS 2 bag, "
                           "DICOM, or a .csv/.txt list)")
    if path.is_file():
        return "npz" if path.suffix.lower() == ".npz" else "sources"
    if claiming(path) is not None:  # a bag directory
        return "sources"
    if (path / "train" / "good").is_dir():
        return "mvtec"
    if any((path / s).is_dir() and _class_dirs(path / s) for s in SPLITS):
        return "imagefolder_splits"
    if _class_dirs(path):
        return "imagefolder"
    if _images_in(path) and not any(p.is_dir() for p in path.iterdir()):
        return "folder"
    return "sources"


def open_dataset(source: str, split: str = "train") -> ImageDataset:
    """Open one split of a data source. Raises ``EdgesslError`` for anything unusable."""
    if split not in SPLITS:
        raise EdgesslError(f"unknown split {split!r}; use one of {SPLITS}")
    kind = detect_kind(source)
    path_text, options = parse_source(source)
    if kind == "sources":
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
    from .sources import open_source_dataset

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
