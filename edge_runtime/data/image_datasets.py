"""The kinds of image collection every reader returns: one interface (``image(i)``, ``labels``,
``class_names``, ``subset``), arrays in memory, files on disk, subsets and concatenations. Labels
are class indices; unlabelled images carry ``UNLABELLED``."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..images import canonical_image, read_image
from .cache import digest, file_identity
from .source_report import SourceReport

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
