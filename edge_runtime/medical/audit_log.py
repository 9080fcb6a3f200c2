"""An append-only audit log: one JSON object per line, hash-chained, never truncated.

The file is opened in append mode (``O_APPEND``) under an exclusive ``flock`` for the whole run,
so concurrent runs cannot interleave. Every entry carries ``prev_sha256``, the sha256 of the
previous line's bytes (its newline excluded; ``null`` for the first line), so deleting, editing
or reordering earlier lines is detectable: ``verify_audit_log`` walks the chain. A crash that
leaves a partial last line is closed with a newline before the next entry; the chain then
points at the partial line and ``verify_audit_log`` names it as unreadable.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..errors import EdgesslError

try:  # POSIX (every device we target); on other systems runs are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

TAIL_BLOCK = 1 << 16


def _last_line(f) -> bytes | None:
    """The last line of an open binary file (``None`` when empty), without its newline."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return None
    block = b""
    pos = size
    while pos > 0:
        step = min(TAIL_BLOCK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step) + block
        body = block[:-1] if block.endswith(b"\n") else block
        cut = body.rfind(b"\n")
        if cut >= 0:
            return body[cut + 1:]
    return block[:-1] if block.endswith(b"\n") else block


class AuditLog:
    """``with AuditLog(path) as log: log.append({...})``: each entry becomes one line, flushed and fsynced."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._f = None
        self._prev: str | None = None

    def __enter__(self) -> "AuditLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EdgesslError(f"audit log {self.path}: cannot open for appending ({exc.strerror})") from None
        self._f = os.fdopen(fd, "a+b")
        if fcntl is not None:
            fcntl.flock(self._f.fileno(), fcntl.LOCK_EX)
        last = _last_line(self._f)
        if last is not None:
            self._prev = hashlib.sha256(last).hexdigest()
            self._f.seek(0, os.SEEK_END)
            self._f.seek(self._f.tell() - 1)
            if self._f.read(1) != b"\n":  # a partial line left by a crash: close it, never cut it
                self._f.write(b"\n")
        return self

    def append(self, entry: dict) -> None:
        line = json.dumps({**entry, "prev_sha256": self._prev}, sort_keys=True, allow_nan=False).encode()
        self._f.write(line + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())
        self._prev = hashlib.sha256(line).hexdigest()

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            if fcntl is not None:
                fcntl.flock(self._f.fileno(), fcntl.LOCK_UN)
            self._f.close()
            self._f = None


def read_audit_log(path: str | Path) -> list[dict]:
    """Every entry, in order."""
    return [json.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def verify_audit_log(path: str | Path) -> int:
    """Check the hash chain; return the number of entries, or raise ``EdgesslError`` at the first break."""
    prev = None
    lines = Path(path).read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for n, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise EdgesslError(f"{path}: line {n} is not a JSON entry (partial write or edit)") from None
        if entry.get("prev_sha256") != prev:
            raise EdgesslError(f"{path}: line {n} does not chain to line {n - 1} (an entry was edited, "
                               "removed or reordered)")
        prev = hashlib.sha256(line).hexdigest()
    return len(lines)
