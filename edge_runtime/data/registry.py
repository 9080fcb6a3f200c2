"""Kinds of file the user's own data comes in, named in one table: the entry points of the group
``edgessl.data_kinds`` in ``pyproject.toml`` (images and videos from ``data/``, ROS 2 bags from
``ros/``, DICOM from ``medical/``). The table is read on first use, so ``data/`` never imports an
application and a Python caller reads a bag or DICOM with no import of its own.

A kind *claims* a path (a file, or a folder such as a bag directory) and *opens* the paths it
claimed, with their labels (indices into the class names, ``UNLABELLED`` when unknown), as one
dataset whose ``report`` says what was read, kept and skipped. Claims are disjoint (suffixes,
DICOM's magic bytes, a bag's folder), so the order kinds are asked in does not matter.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from ..errors import EdgesslError
from .source_text import SourceOptions

ENTRY_POINTS = "edgessl.data_kinds"

Opener = Callable[[list[Path], list[int], list[str], SourceOptions], "object"]  # -> ImageDataset


@dataclass(frozen=True)
class SourceKind:
    name: str  # for messages: "ROS 2 bag", "video", "DICOM", "image"
    claims: Callable[[Path], bool]
    open: Opener


class UnreadableFile(EdgesslError):
    """A claimed file that cannot be read at all (a bag whose end is cut off, a video that does not
    open): the source's other files are still read, and this one is counted and listed."""


@lru_cache(maxsize=1)
def kinds() -> tuple[SourceKind, ...]:
    """Every kind of the entry-point table, by entry name."""
    found = sorted(entry_points(group=ENTRY_POINTS), key=lambda ep: ep.name)
    if not found:
        raise EdgesslError(f"no data kinds are registered (entry points {ENTRY_POINTS!r}); reinstall edgessl")
    return tuple(ep.load() for ep in found)


def claiming(path: Path) -> SourceKind | None:
    """The kind that reads ``path``, if any."""
    return next((kind for kind in kinds() if kind.claims(path)), None)


def known_kinds() -> str:
    return ", ".join(sorted(kind.name for kind in kinds()))
