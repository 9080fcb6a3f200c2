"""Argparse glue every stage's ``commands.py`` shares."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TypeVar

from ..data.source_text import DEDUP_THRESHOLD, with_options

T = TypeVar("T")


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The dataclass ``cls`` filled from the parsed options whose names are its fields; ``data``
    gets the frame selection options written into it (``data.source_text``)."""
    names = {f.name for f in fields(cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    if "data" in values:
        values["data"] = source_from_args(args)
    return cls(**values)


def add_source_options(p: argparse.ArgumentParser) -> None:
    """``--topic``, ``--every``, ``--fps``, ``--max-frames``, ``--dedup``, ``--dicom-modality``."""
    g = p.add_argument_group("footage and DICOM in --data (see docs/data-sources.md)")
    g.add_argument("--topic", default=None, help="bag image topic (default: the bag's only image topic)")
    g.add_argument("--every", type=int, default=None, metavar="N", help="keep every N-th frame (default: 1)")
    g.add_argument("--fps", type=float, default=None, metavar="F",
                   help="keep at most F frames per second of footage (bag stamps, video frame rate)")
    g.add_argument("--max-frames", type=int, default=None, metavar="N", help="keep at most N frames per video or bag")
    g.add_argument("--dedup", type=float, default=None, metavar="T",
                   help=f"skip a frame within T grey levels (32x32 thumbnails) of the last kept one "
                        f"(default: {DEDUP_THRESHOLD}; 0 keeps every frame)")
    g.add_argument("--dicom-modality", default=None, metavar="M[,M]", help="keep only these DICOM modalities, e.g. CR,DX")


def source_from_args(args: argparse.Namespace) -> str | None:
    """``args.data`` with the source options given on the command line written into it."""
    data = getattr(args, "data", None)
    if data is None or not hasattr(args, "topic"):
        return data
    return with_options(data, topic=args.topic, every=args.every, fps=args.fps, max_frames=args.max_frames,
                        dedup=args.dedup, modality=args.dicom_modality)
