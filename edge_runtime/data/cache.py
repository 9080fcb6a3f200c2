"""The on-disk cache: resized uint8 images (and frame selections), built once, reused by every run.

Where: ``$EDGESSL_CACHE``, else ``$XDG_CACHE_HOME/edgessl``, else ``~/.cache/edgessl``.
What: ``images-<key>.npy``, an ``N x C x H x W`` uint8 ``.npy`` file (``numpy.load(path,
mmap_mode="r")`` opens it too), and ``select-<key>.json``. The key is a sha256 over the source's
identity (every file's resolved path, size and modification time, plus the frames chosen) and the
geometry (size, channels, resize policy), so a source that changed gets a new key and is rebuilt;
a stale entry is never read.
How: the builder holds an exclusive lock (``flock`` on ``<entry>.lock``), so concurrent runs and
``torchrun`` ranks build an entry once and the others wait and read it; it writes ``<entry>.tmp``
and renames it into place, so an interrupted build leaves no entry and loses no other.
Reads use ``preadv`` into the caller's buffer instead of a memory map: the kernel's page cache,
not the process, holds the file, so a process's memory does not grow with the data set.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from ..errors import EdgesslError


def cache_root() -> Path:
    if os.environ.get("EDGESSL_CACHE"):
        return Path(os.environ["EDGESSL_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgessl"


def digest(value) -> str:
    """sha256 (hex, 32 characters) of a JSON-able value."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:32]


def file_identity(paths: Iterable[Path]) -> list[tuple[str, int, int]]:
    """``(resolved path, size, mtime_ns)`` of every file at or below each path."""
    out = []
    for path in paths:
        files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
        for f in files:
            st = f.stat()
            out.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    return out


@contextmanager
def _locked(entry: Path) -> Iterator[None]:
    entry.parent.mkdir(parents=True, exist_ok=True)
    with open(entry.with_name(entry.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def cached_json(kind: str, key, build: Callable[[], dict]) -> dict:
    """``build()``'s result, computed once per ``key`` and kept as ``<kind>-<digest>.json``."""
    entry = cache_root() / f"{kind}-{digest(key)}.json"
    with _locked(entry):
        if entry.is_file():
            return json.loads(entry.read_text())
        value = build()
        tmp = entry.with_name(entry.name + ".tmp")
        tmp.write_text(json.dumps(value))
        os.replace(tmp, entry)
        return value


class UInt8Store:
    """A ``.npy`` uint8 array on disk, rows read on demand with ``preadv``."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = header(f)
            self.offset = f.tell()
        if dtype != np.uint8 or fortran:
            raise EdgesslError(f"{path}: not a C-ordered uint8 cache file")
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(self.shape[1:]))
        self.fd = os.open(path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def read(self, rows: np.ndarray) -> np.ndarray:
        """The given rows, in the given order, as a new array."""
        rows = np.asarray(rows, np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        out = np.empty((len(rows), *self.shape[1:]), np.uint8)
        for k, r in enumerate(rows):
            if os.preadv(self.fd, [memoryview(out[k]).cast("B")], self.offset + int(r) * self.row_bytes) != self.row_bytes:
                raise EdgesslError(f"{self.path}: cache file is shorter than its header says; delete it")
        return out

    def __del__(self) -> None:
        fd = getattr(self, "fd", None)
        if fd is not None:
            os.close(fd)


def build_store(key, shape: tuple[int, ...], rows: Callable[[], Iterator[np.ndarray]]) -> UInt8Store:
    """The cache entry for ``key``: read if present, else written from ``rows()`` (one per index)."""
    entry = cache_root() / f"images-{digest(key)}.npy"
    with _locked(entry):
        if not entry.is_file():
            tmp = entry.with_name(entry.name + ".tmp")
            try:
                with open(tmp, "wb") as f:
                    np.lib.format.write_array_header_1_0(
                        f, {"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
                    count = 0
                    for row in rows():
                        f.write(np.ascontiguousarray(row, np.uint8).tobytes())
                        count += 1
                    if count != shape[0]:
                        raise EdgesslError(f"cache build gave {count} images, expected {shape[0]}")
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, entry)
            finally:
                tmp.unlink(missing_ok=True)
    return UInt8Store(entry)
