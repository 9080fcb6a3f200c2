"""Where a command writes, checked before it reads or writes anything: outputs never destroy inputs.

Every command that writes names its outputs (``--out``, ``--overlays``, ...) and its inputs (the
source, the bundle, the run, labels, keys) here first, and is refused in one line (exit 2):

* an output that **is** one of its inputs, or a folder **holding** one (``run --source x.png --out
  x.png``, ``export --force --out RUN`` or its parent);
* an output **inside a bundle** it reads (a file added to a sealed folder breaks the bundle);
* an output of the wrong kind: a folder where a file is written, a file where a folder is;
* an existing output file, unless ``--force`` (or unless the command updates it: a log appended
  to, a cache).

Paths are compared after resolving symbolic links and ``..``, so another spelling of an input is
the input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from .errors import EdgesslError


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def refuse_overlap(out: str | Path, option: str, inputs: Iterable[str | Path] = (),
                   sealed: Iterable[str | Path] = ()) -> Path:
    """``out`` resolved, refused when it is one of ``inputs`` (or of ``sealed``), a folder holding one,
    or inside one of ``sealed`` (bundles)."""
    target = _resolved(out)
    for given in (*inputs, *sealed):
        path = _resolved(given)
        if target == path:
            raise EdgesslError(f"{option} {out} is an input of this command ({given}); it would be overwritten; "
                               f"choose another {option}")
        if target in path.parents:
            raise EdgesslError(f"{option} {out} holds an input of this command ({given}); choose another {option}")
    for given in sealed:
        if _resolved(given) in target.parents:
            raise EdgesslError(f"{option} {out} is inside the bundle {given}, whose files are sealed; choose a path "
                               "outside it")
    return target


def output_file(out: str | Path, option: str, force: bool = False, updated: bool = False) -> Path:
    """``out`` checked as a file to write: not a folder, its parent a folder, and when it exists,
    replaced only with ``force`` (``updated``: a file the command reads and updates, a log or a cache)."""
    path = Path(out)
    if path.is_dir():
        raise EdgesslError(f"{option} {out} is a folder; give a file")
    if path.exists() and not (force or updated):
        raise EdgesslError(f"{option} {out} already exists; pass --force to replace it, or choose another {option}")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise EdgesslError(f"{option} {out}: {parent} is a file, not a folder")
    return path


def output_folder(out: str | Path, option: str) -> Path:
    """``out`` checked as a folder to write into: a folder, or nothing yet (no file in the way)."""
    path = Path(out)
    blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise EdgesslError(f"{option} {out}: {blocker} is a file, not a folder")
    return path
