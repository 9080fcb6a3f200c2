"""The user's own data as one dataset: a video, a ROS 2 bag, DICOM, a list of files, or a folder
holding any mix of these (nested to any depth).

* a file or folder some registered kind claims (``registry``: videos and images here, bags from
  ``ros/``, DICOM from ``medical/``) is read by that kind;
* a ``.csv``/``.txt`` list: one file per row, ``path`` or ``path,label``, paths relative to the
  list's folder; a header row (``path,label`` or ``file,label``), blank rows and ``#`` comments
  are skipped. A row naming a missing or unreadable file is counted and listed, never fatal;
* any other folder: every path below it, sorted, grouped by the kind that claims it (a claimed
  folder such as a bag directory is not looked into). Unlabelled.

The whole source is opened once per process (splits are carved from it by ``open_dataset``); its
``report`` (read, kept, skipped, problems) is printed as one line on stderr.
"""

from __future__ import annotations

import csv
import sys
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import EdgesslError
from ..images import is_image_file
from .image_datasets import UNLABELLED, ConcatDataset, FileDataset, ImageDataset
from .cache import digest, file_identity
from .footage import open_footage
from .frame_selection import selection_error
from .registry import SourceKind, UnreadableFile, claiming, known_kinds
from .source_report import SourceReport
from .source_text import SourceOptions, parse_source
from ..video import is_video
from .video import VideoStream

LIST_SUFFIXES = (".csv", ".txt")
HEADERS = ("path", "file")


def _open_images(paths: list[Path], labels: list[int], class_names: list[str],
                 options: SourceOptions) -> ImageDataset:
    ds = FileDataset(str(paths[0].parent) if len(paths) > 1 else str(paths[0]), "all", paths, np.asarray(labels),
                     class_names)
    ds.report = SourceReport(ds.source, read=len(paths), kept=len(paths))
    return ds


def _open_videos(paths: list[Path], labels: list[int], class_names: list[str],
                 options: SourceOptions) -> ImageDataset:
    return open_each(paths, labels, class_names, lambda p: open_footage(VideoStream(p), options))


IMAGE = SourceKind("image", is_image_file, _open_images)
VIDEO = SourceKind("video", is_video, _open_videos)


def open_each(paths: list[Path], labels: list[int], class_names: list[str],
              open_one: Callable[[Path], ImageDataset]) -> ImageDataset:
    """One dataset per path (label ``labels[k]`` on every image of path k), concatenated, with one
    report; a file that cannot be read at all (``UnreadableFile``) is counted and listed."""
    parts, report = [], SourceReport("")
    for path, label in zip(paths, labels):
        try:
            part = open_one(path)
        except UnreadableFile as exc:
            report.read += 1
            report.skip("error", str(exc))
            continue
        part.labels, part.class_names = np.full(len(part), label, np.int64), class_names
        if part.report is not None:
            report.merge(part.report)
        parts.append(part)
    ds = ConcatDataset(", ".join(str(p) for p in paths), parts, class_names)
    ds.report = report
    return ds


def _class_names(labels: list[str | None]) -> list[str]:
    names = sorted({label for label in labels if label is not None})
    return sorted(names, key=int) if all(n.lstrip("-").isdigit() for n in names) else names


def _open_grouped(name: str, paths: list[Path], texts: list[str | None], options: SourceOptions,
                  report: SourceReport) -> ImageDataset:
    """Open each path with the kind that claims it (kinds in the order first seen); one dataset."""
    class_names = _class_names(texts)
    groups: dict[str, tuple[SourceKind, list[Path], list[int]]] = {}
    for path, text in zip(paths, texts):
        kind = claiming(path)
        if kind is None:
            report.skip("error", f"{path}: not a kind of file edgessl reads (known: {known_kinds()})")
            continue
        entry = groups.setdefault(kind.name, (kind, [], []))
        entry[1].append(path)
        entry[2].append(UNLABELLED if text is None else class_names.index(text))
    parts = [kind.open(ps, ls, class_names, options) for kind, ps, ls in groups.values()]
    for part in parts:
        report.merge(part.report)
    report.source = name
    ds = parts[0] if len(parts) == 1 else ConcatDataset(name, parts, class_names)
    if len(ds) == 0:
        raise selection_error(report, "need at least 1")
    ds.source, ds.report = name, report
    return ds


def _list_rows(path: Path) -> list[tuple[str, str | None]]:
    try:
        with open(path, newline="") as f:
            rows = [[c.strip() for c in r] for r in csv.reader(f) if r and r[0].strip() and not r[0].startswith("#")]
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgesslError(f"{path}: cannot read the list ({exc})") from None
    if rows and rows[0][0].lower() in HEADERS:
        rows = rows[1:]
    return [(r[0], r[1] if len(r) > 1 and r[1] else None) for r in rows]


def _open_list(path: Path, options: SourceOptions) -> ImageDataset:
    report = SourceReport(str(path))
    paths, texts = [], []
    for row, (rel, label) in enumerate(_list_rows(path), start=1):
        target = (path.parent / rel) if not Path(rel).is_absolute() else Path(rel)
        if not target.exists():
            report.read += 1
            report.skip("missing", f"{path} row {row}: {rel} not found")
            continue
        paths.append(target)
        texts.append(label)
    if not paths and not report.read:
        raise EdgesslError(f"{path}: the list names no files")
    return _open_grouped(str(path), paths, texts, options, report)


def _walk(root: Path) -> list[Path]:
    """Every path below ``root`` that a kind claims, sorted, without looking inside claimed folders."""
    found = []
    for child in sorted(root.iterdir()):
        if child.name.startswith("."):
            continue
        if claiming(child) is not None:
            found.append(child)
        elif child.is_dir():
            found += _walk(child)
    return found


def open_source_dataset(source: str) -> ImageDataset:
    """The whole of ``source`` (``PATH?options``) as one dataset; see the module docstring. Opened
    once per process while the files at or below its path are unchanged."""
    path = Path(parse_source(source)[0])
    return _open_source(source, digest(file_identity([path])) if path.exists() else "")


@lru_cache(maxsize=8)
def _open_source(source: str, files_digest: str) -> ImageDataset:
    text, options = parse_source(source)
    path = Path(text)
    if path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
        ds = _open_list(path, options)
    elif claiming(path) is not None:
        ds = _open_grouped(text, [path], [None], options, SourceReport(text))
    elif path.is_dir():
        found = _walk(path)
        if not found:
            raise EdgesslError(f"{text}: no images found (expected images, videos, ROS 2 bags, DICOM, "
                               "<class>/ folders, or train/ test/)")
        ds = _open_grouped(text, found, [None] * len(found), options, SourceReport(text))
    else:
        raise EdgesslError(f"{text}: not a data source edgessl reads (known kinds: {known_kinds()}; "
                           "or a .npz, or a .csv/.txt list)")
    print(f"edgessl: {ds.report.line()}", file=sys.stderr)
    return ds
