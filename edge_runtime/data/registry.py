"""Kinds of file the user's own data comes in, registered by the rooms that read them.

``data/`` reads videos and images itself; the applications add what only they read (``ros/``
registers ROS 2 bags, ``medical/`` DICOM) when they are imported, so ``data/`` never imports
an application. The CLI imports both; a Python caller imports ``edgessl.edge_runtime.ros`` /
``edgessl.edge_runtime.medical`` to read those kinds.

A kind *claims* a path (a file, or a folder such as a bag directory) and *opens* the paths it
claimed, with their labels (indices into the class names, ``UNLABELLED`` when unknown), as one
dataset whose ``report`` says what was read, kept and skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import EdgesslError
from .source_text import SourceOptions

Opener = Callable[[list[Path], list[int], list[str], SourceOptions], "object"]  # -> ImageDataset


@dataclass(frozen=True)
class SourceKind:
    name: str  # for messages: "ROS 2 bag", "video", "DICOM", "image"
    claims: Callable[[Path], bool]
    open: Opener


class UnreadableFile(EdgesslError):
    """A claimed file that cannot be read at all (a bag whose end is cut off, a video that does not
    open): the source's other files are still read, and this one is counted and listed."""


KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> SourceKind:
    """Add (or replace) a kind; later registrations are asked first."""
    KINDS.pop(kind.name, None)
    KINDS[kind.name] = kind
    return kind


def claiming(path: Path) -> SourceKind | None:
    """The kind that reads ``path``, if any (the most recently registered first)."""
    for kind in reversed(list(KINDS.values())):
        if kind.claims(path):
            return kind
    return None


def known_kinds() -> str:
    return ", ".join(sorted(KINDS))
