"""The one way a bundle is made or changed: ``update_bundle``.

``export`` (a new bundle), ``calibrate``, ``build-engine`` and ``operating-point`` all go through it:

1. verify the bundle as loading does (seal, every file's sha256, no unlisted file); optionally
   refuse a bundle that changed since the caller read it (``based_on``, its hash then);
2. copy its listed files into a hidden sibling staging directory (``.BUNDLE.update.<pid>.tmp``);
3. apply the change there: ``change(staging_dir, manifest) -> new manifest``;
4. re-seal (``bundle.seal``) and verify the staging directory;
5. swap it in with one atomic rename (Linux ``renameat2(RENAME_EXCHANGE)``; elsewhere two renames).

A failure at any step leaves the bundle as it was. Updates are serialised by an exclusive
``flock`` on the folder that holds the bundle (no lock file is left behind), so two concurrent
commands never lose a change. A process killed mid-way leaves its hidden sibling behind
(``.BUNDLE.<what>.<pid>.tmp``, tens of megabytes, possibly a complete bundle): the next change to
that bundle, or calibration of it (``work_folder``), removes every such folder whose process is
gone. The detached signature is not carried over (it
signed the old manifest): a signed bundle comes out unsigned, and a note says to sign it again.
Nor is the engines delta (``engines/``, built for the old base): a note says to rebuild.

``add_engine`` (``build-engine``) changes only the engines delta, the same way: verify the bundle
and its delta, copy the delta into a hidden sibling folder, add the engine, re-seal the delta
naming the base bundle's hash, and swap the folder in. The base manifest, its hash and its
signature stay as they were. ``edgessl adapt`` writes the adaptation delta the same way
(``replace_delta``), replacing the one before (and its signature, which signed the old record).
"""

from __future__ import annotations

import contextlib
import copy
import ctypes
import ctypes.util
import fcntl
import glob
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

from .bundle import ADAPT, ENGINES, MANIFEST, Bundle, Delta, seal, seal_delta
from .engines import upsert_engine
from .files import write_atomic
from .signing import SIGNATURE
from .errors import EdgesslError

Change = Callable[[Path, dict], dict]
Fill = Callable[[Path, Bundle], dict]
RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100
STAGING = re.compile(r"\.(?P<name>.+)\.(?P<what>[a-z]+)\.(?P<pid>\d+)\.tmp")


def staging_folder(out: Path, what: str) -> Path:
    """The hidden sibling where this process prepares ``what`` for the bundle at ``out``."""
    return out.with_name(f".{out.name}.{what}.{os.getpid()}.tmp")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove the staging folders of the bundle at ``out`` whose process is no longer running
    (killed mid-export or mid-calibration); returns them."""
    stale = []
    for p in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
        m = STAGING.fullmatch(p.name)
        if m and m["name"] == out.name and not _running(int(m["pid"])) and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
            stale.append(p)
    return stale


@contextlib.contextmanager
def work_folder(out: Path, what: str) -> Iterator[Path]:
    """A fresh hidden sibling of the bundle at ``out`` for ``what`` (calibration's models), removed
    afterwards; stale ones of killed processes are removed first."""
    remove_stale_staging(out)
    folder = staging_folder(out, what)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths with ``renameat2``; False where the system has no such call."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: a file system without exchange
        return False
    raise OSError(err, os.strerror(err), str(a))


def install(staging: Path, out: Path) -> None:
    """Put the finished ``staging`` at ``out``, replacing any existing bundle there, then remove the old one."""
    if not out.exists():
        os.replace(staging, out)
        return
    if _exchange(staging, out):
        shutil.rmtree(staging, ignore_errors=True)  # now holds the old bundle
        return
    old = staging_folder(out, "old")
    os.replace(out, old)
    try:
        os.replace(staging, out)
    except OSError:
        os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def check_new(out: Path, replace: bool) -> None:
    """Refuse to make a bundle where something already is, unless ``replace`` and it is a bundle
    (``--force`` never deletes a folder that is not one: a run, a dataset, a home directory); an
    empty folder is no loss."""
    if not os.path.lexists(out) or (out.is_dir() and not out.is_symlink() and not any(out.iterdir())):
        return
    is_bundle = out.is_dir() and not out.is_symlink() and (out / MANIFEST).is_file()
    if not is_bundle:
        raise EdgesslError(f"{out} already exists and is not a bundle; choose another --out (--force replaces "
                           "only a bundle)")
    if not replace:
        raise EdgesslError(f"{out} already exists (a bundle); choose another --out or pass --force to replace it")


def update_bundle(path: str | Path, change: Change, *, create: bool = False, replace: bool = False,
                  based_on: str | None = None) -> Bundle:
    """Apply ``change`` to the bundle at ``path`` (module docstring) and return the new, verified bundle.

    ``create``: make a new bundle from an empty manifest; an existing ``path`` is refused unless
    ``replace``. ``based_on``: the bundle hash the caller's change was computed from.
    """
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out):
        signed, engines, adapted = _update(out, change, create, replace, based_on)
    if signed:
        print(f"edgessl: note: {out} changed, so its signature was removed; sign it again with "
              f"`edgessl sign --bundle {out} --key KEY`", file=sys.stderr)
    if engines:
        print(f"edgessl: note: {out} changed, so its {engines} TensorRT engine(s) ({ENGINES.folder}/, built for the old "
              f"bundle) were dropped; rebuild them on the device with `edgessl build-engine`", file=sys.stderr)
    if adapted:
        print(f"edgessl: note: {out} changed, so its adaptation delta ({ADAPT.folder}/, made for the old bundle) was "
              "dropped; run `edgessl adapt` again on the device", file=sys.stderr)
    return Bundle.load(out)


class _locked:
    """An exclusive ``flock`` on the folder that holds the bundle, for the ``with`` block."""

    def __init__(self, out: Path):
        self.folder = out.parent

    def __enter__(self):
        self.fd = os.open(self.folder, os.O_RDONLY)
        fcntl.flock(self.fd, fcntl.LOCK_EX)  # released when the descriptor closes

    def __exit__(self, *exc):
        os.close(self.fd)


def _current(out: Path, based_on: str | None, delta: bool = True) -> Bundle:
    """The bundle at ``out``, verified (``delta``: with its adaptation delta), refused when it is not
    the one the caller read (``based_on``)."""
    old = Bundle.load(out, delta=delta)
    if based_on is not None and old.hash != based_on:
        raise EdgesslError(f"{out}: the bundle changed while this command ran (hash {based_on[:12]} -> "
                           f"{old.hash[:12]}); run it again")
    return old


def _update(out: Path, change: Change, create: bool, replace: bool, based_on: str | None) -> tuple[bool, int, bool]:
    """Steps 1-5 of the module docstring, under the lock; returns whether the old bundle was signed,
    how many engines its delta held and whether it had an adaptation delta."""
    signed, engines, adapted = False, 0, False
    remove_stale_staging(out)
    if create:
        check_new(out, replace)
        manifest: dict = {}
    else:
        old = _current(out, based_on)
        manifest, signed, engines = copy.deepcopy(old.manifest), old.signature is not None, len(old.engines)
        adapted = old.adapt is not None
    staging = staging_folder(out, "update")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for rel in manifest.get("files", {}):
            (staging / rel).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(staging / rel, old.read(rel))
        new = change(staging, manifest)
        seal(staging, {k: v for k, v in new.items() if k != "seal"})
        Bundle.load(staging)
        install(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return signed, engines, adapted


def replace_delta(path: str | Path, delta: Delta, fill: Fill, based_on: str) -> Bundle:
    """Write ``delta`` of the bundle at ``path`` anew (module docstring): ``fill(folder, old)`` writes
    its files into a fresh ``folder`` (the bundle as loaded, ``old``, at hand) and returns the body
    of its record; the record is sealed naming the base's hash and the folder swapped in. The
    adaptation delta is not read here (a new one replaces it whole; an engine leaves it as it is).
    Returns the bundle."""
    out = Path(path)
    with _locked(out):
        old = _current(out, based_on, delta=False)
        remove_stale_staging(out)
        staging = staging_folder(out, delta.folder)
        shutil.rmtree(staging, ignore_errors=True)
        (staging / delta.folder).mkdir(parents=True)
        try:
            seal_delta(staging, delta, old.hash, fill(staging / delta.folder, old))
            install(staging / delta.folder, out / delta.folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return Bundle.load(out)


def add_engine(path: str | Path, entry: dict, engine: bytes, based_on: str) -> Bundle:
    """Add (or replace, by key) the engine ``entry`` with its bytes to the engines delta of the bundle
    at ``path`` (module docstring); ``entry["file"]`` is its path, under ``engines/``. Returns the bundle."""
    def fill(folder: Path, old: Bundle) -> dict:
        keep = [e for e in old.engines if e["key"] != entry["key"]]
        for e in keep:
            write_atomic(folder.parent / e["file"], old.read(e["file"]))
        write_atomic(folder.parent / entry["file"], engine)
        return {"engines": upsert_engine(keep, entry)}

    return replace_delta(path, ENGINES, fill, based_on)
