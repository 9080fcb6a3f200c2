"""Reading, writing and hashing files: the one reader of untrusted files, the one atomic write
every module uses, and a file's sha256.

``read_regular`` reads a file once, into memory, and only a regular file: a FIFO, a device
(``/dev/zero``), a socket or a folder is refused in one line instead of blocking or reading
forever. ``write_atomic`` writes beside the target and renames, with the mode the umask gives a
new file (0644 under the usual 022), so another user of the device can read what edgessl wrote.
"""

from __future__ import annotations

import errno
import hashlib
import os
import secrets
import stat
from pathlib import Path

from .errors import EdgesslError

READ_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(READ_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def read_regular(path: str | Path, what: str = "file") -> bytes:
    """The bytes of the regular file ``path``, read once; ``EdgesslError`` naming ``what`` when it
    is missing, unreadable, or not a regular file."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise EdgesslError(f"{what} {path} not found") from None
    except OSError as exc:
        raise EdgesslError(f"{what} {path}: cannot read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file (a device, FIFO or socket)"
            raise EdgesslError(f"{what} {path} is {kind}")
        try:
            return f.read()
        except OSError as exc:
            raise EdgesslError(f"{what} {path}: cannot read ({exc.strerror})") from None


def _temporary(path: Path) -> tuple[int, Path]:
    """A new, uniquely named hidden file beside ``path``, open for writing, mode 0666 less the umask."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), tmp
        except FileExistsError:
            continue


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a uniquely named temporary file beside it, flushed to disk
    (fsync), then a rename: a reader sees the old file or the new one, never half of one, and two
    writers never share a temporary file. The file gets the mode the umask gives a new file.
    ``EdgesslError`` (one line) when the folder cannot be written (read-only, full, a file)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _temporary(path)
    except OSError as exc:
        raise EdgesslError(f"cannot write {path} ({_reason(exc)})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise EdgesslError(f"cannot write {path} ({_reason(exc)})") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) and exc.filename is not None:
        return f"{exc.filename} is a file, not a folder"
    return exc.strerror or str(exc)
