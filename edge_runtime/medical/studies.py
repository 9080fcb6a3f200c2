"""Triage inputs: files, folders and globs of DICOM, image and MedMNIST ``.npz`` files, as studies.

A ``Study`` is one image to score with what identifies it for an audit: the input file and its
sha256, the frame (multi-frame DICOM) or index (``.npz``), the DICOM study/series/instance UIDs
and modality, and a label when one is known. A study that cannot be read carries ``reason``
instead of an image; reading never stops at a bad file.

Inputs: a file; a folder (every DICOM, image or ``.npz`` file below it, sorted; files without a
suffix are DICOM when they carry the ``DICM`` magic); a glob (``"scans/**/*.dcm"``); or a dataset
source given with ``dataset=`` (``open_dataset``: MedMNIST ``.npz``, MVTec-AD, ImageFolder).
Labels for files come from a CSV with columns ``file,label`` (``file`` is the path as found or the
file name, with ``#frame`` for a frame of a multi-frame file); ``.npz`` and dataset studies keep the dataset's labels.
"""

from __future__ import annotations

import csv
import glob
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..files import file_sha256, read_regular
from ..data.datasets import open_dataset
from ..data.image_datasets import ImageDataset
from .dicom import DicomFile, is_dicom_file
from ..errors import EdgesslError
from ..images import CAMERA_PIXELS, IMAGE_SUFFIXES, files_in, read_image

NPZ_SUFFIX = ".npz"


@dataclass
class Study:
    """One image to score (or the reason it cannot be), with what identifies it."""

    file: str
    file_sha256: str
    frame: int | None = None  # DICOM frame (multi-frame files) or .npz index
    study_uid: str = ""
    series_uid: str = ""
    instance_uid: str = ""
    modality: str = ""
    image: np.ndarray | None = None
    reason: str = ""
    label: str | None = None  # the class as written in the labels (a name or an index)

    @property
    def key(self) -> str:
        return self.file if self.frame is None else f"{self.file}#{self.frame}"


def image_sha256(img: np.ndarray) -> str:
    """sha256 of the decoded pixels with their shape and type: what the model was actually shown."""
    h = hashlib.sha256(f"{img.dtype.str}{img.shape}".encode())
    h.update(np.ascontiguousarray(img).tobytes())
    return h.hexdigest()


def _known(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES + (NPZ_SUFFIX,) or is_dicom_file(path)


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Every file the inputs name, in order, without repeats. An explicitly named file is kept
    whatever its type (it becomes an unscored study if unreadable); folders keep known types."""
    out: list[Path] = []
    for text in inputs:
        path = Path(text)
        if any(c in text for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
            if not found:
                raise EdgesslError(f"no files match {text}")
            out += found
        elif path.is_dir():
            found = files_in(path, _known)
            if not found:
                raise EdgesslError(f"{text}: no DICOM, image or .npz files below this folder")
            out += found
        elif path.is_file():
            out.append(path)
        elif path.exists():
            raise EdgesslError(f"input {text} is not a regular file or folder (a device, FIFO or socket)")
        else:
            raise EdgesslError(f"input not found: {text} (give a file, a folder or a glob)")
    seen: set[Path] = set()
    return [p for p in out if not (p in seen or seen.add(p))]


def _dicom_studies(path: Path, sha: str, max_pixels: int) -> Iterator[Study]:
    try:
        f = DicomFile(path, max_pixels)
    except EdgesslError as exc:
        yield Study(str(path), sha, reason=str(exc))
        return
    ids = dict(study_uid=f.info.study_uid, series_uid=f.info.series_uid, instance_uid=f.info.instance_uid,
               modality=f.info.modality)
    multi = f.info.frames > 1
    try:
        for i, frame in enumerate(f.frames()):
            yield Study(str(path), sha, i if multi else None, image=frame, **ids)
    except EdgesslError as exc:
        yield Study(str(path), sha, reason=str(exc), **ids)


def dataset_studies(ds: ImageDataset, file_sha: str = "") -> Iterator[Study]:
    """The images of a dataset split as studies (``file`` is the dataset's name for each image)."""
    for i in range(len(ds)):
        name = ds.name(i)
        is_file = Path(name).is_file()
        sha = file_sha256(Path(name)) if is_file else file_sha
        label = None if ds.labels[i] < 0 else ds.class_names[ds.labels[i]] if ds.class_names else str(ds.labels[i])
        try:
            yield Study(name, sha, None if is_file else i, image=ds.image(i), label=label)
        except EdgesslError as exc:
            yield Study(name, sha, None if is_file else i, reason=str(exc), label=label)


def file_studies(path: Path, npz_split: str = "test", max_pixels: int = CAMERA_PIXELS) -> Iterator[Study]:
    """The studies in one file (several for multi-frame DICOM and ``.npz``); an image or DICOM over
    ``max_pixels`` is an unscored study (refused before decoding)."""
    try:
        sha = file_sha256(path)
    except OSError as exc:
        yield Study(str(path), "", reason=f"{path}: cannot read ({exc.strerror})")
        return
    if is_dicom_file(path):
        yield from _dicom_studies(path, sha, max_pixels)
    elif path.suffix.lower() == NPZ_SUFFIX:
        try:
            ds = open_dataset(str(path), npz_split)
        except EdgesslError as exc:
            yield Study(str(path), sha, reason=str(exc))
            return
        yield from dataset_studies(ds, sha)
    elif path.suffix.lower() in IMAGE_SUFFIXES:
        try:
            yield Study(str(path), sha, image=read_image(path, max_pixels))
        except EdgesslError as exc:
            yield Study(str(path), sha, reason=str(exc))
    else:
        yield Study(str(path), sha, reason=f"{path}: unsupported file type (DICOM, {', '.join(IMAGE_SUFFIXES)}, "
                                           ".npz)")


def read_labels(path: str | Path) -> dict[str, str]:
    """A ``file,label`` CSV (UTF-8) to a mapping (keys: the file as written); ``EdgesslError`` naming
    the first row without both."""
    path = Path(path)
    try:
        text = read_regular(path, "labels file").decode("utf-8")
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    except UnicodeDecodeError:
        raise EdgesslError(f"labels file {path}: not UTF-8 text (save it as UTF-8 CSV)") from None
    except csv.Error as exc:
        raise EdgesslError(f"labels file {path}: not a CSV file ({exc})") from None
    if not rows or not {"file", "label"} <= set(rows[0]):
        raise EdgesslError(f"labels file {path}: needs a header with columns file,label")
    short = next((i for i, r in enumerate(rows, 2) if r["file"] is None or r["label"] is None), None)
    if short is not None:
        raise EdgesslError(f"labels file {path}: line {short} has no label (each row: file,label)")
    return {r["file"]: r["label"].strip() for r in rows}


def label_for(study: Study, labels: dict[str, str]) -> str | None:
    """The label of a study: matched on its key (``file#frame``), its path, then the same by file name."""
    name = Path(study.file).name
    for k in (study.key, study.file, name if study.frame is None else f"{name}#{study.frame}", name):
        if k in labels:
            return labels[k]
    return study.label


def iter_studies(inputs: Iterable[str], labels: dict[str, str] | None = None,
                 npz_split: str = "test", max_pixels: int = CAMERA_PIXELS) -> Iterator[Study]:
    """Every study of every input (see the module docstring), with labels attached where known."""
    for path in expand_inputs(inputs):
        for study in file_studies(path, npz_split, max_pixels):
            if labels:
                study.label = label_for(study, labels)
            yield study
