"""An append-only audit log whose every line is verifiable: one JSON object per line, hash-chained,
anchored, optionally keyed; never truncated.

Line ``n`` is the canonical JSON (``bundle.canonical_json``) of the entry plus::

    seq         n (1-based)
    prev_sha256 line n-1's sha256 (null on line 1)
    sha256      sha256(canonical JSON of the line without sha256 and hmac)
    hmac        HMAC-SHA256(key, the same bytes)          (only with a key: ``--audit-key FILE``)

After each append the anchor ``<log>.anchor`` (``{"count", "head_sha256", "keyed"[, "hmac"]}``) is
replaced atomically, so the last line and the length are checked too. ``verify_audit_log`` names
the **first** affected line: an edited line (its sha256 or HMAC), a line changed with its sha256
recomputed (the next line no longer chains to it; the anchor for the last line), a removed,
inserted or reordered line (its ``seq``), a truncated tail (the anchor's count, or a line without
its newline). Without a key, someone who rewrites the whole log and its anchor is not detected;
with one, they would need the key.

Appends take an exclusive ``flock`` on the log (each append alone, so concurrent runs interleave
whole lines and never lose one), and refuse a log whose tail does not match its anchor, so a
tampered or truncated log is never extended and "blessed". A crash that leaves a partial last line
is closed with a newline before the next entry; ``verify_audit_log`` then names that line. A crash
between a line and its anchor leaves the anchor one line behind: the next append completes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from ..bundle import canonical_json
from ..files import write_atomic
from ..errors import EdgesslError

try:  # POSIX (every device we target); on other systems appends are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

TAIL_BLOCK = 1 << 16
MIN_KEY_BYTES = 16
FIELDS = ("seq", "prev_sha256", "sha256")


def anchor_path(path: str | Path) -> Path:
    return Path(f"{path}.anchor")


def read_key(path: str | Path | None) -> bytes | None:
    """The HMAC key: the file's bytes (at least ``MIN_KEY_BYTES``)."""
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise EdgesslError(f"audit key {p} not found (make one: head -c 32 /dev/urandom > {p})")
    key = p.read_bytes()
    if len(key) < MIN_KEY_BYTES:
        raise EdgesslError(f"audit key {p} has {len(key)} bytes; use at least {MIN_KEY_BYTES} random bytes "
                           f"(head -c 32 /dev/urandom > {p})")
    return key


def _body(record: dict) -> bytes:
    return canonical_json({k: v for k, v in record.items() if k not in ("sha256", "hmac")})


def _mac(key: bytes, record: dict) -> str:
    return hmac.new(key, _body(record), hashlib.sha256).hexdigest()


def _seal_record(record: dict, key: bytes | None) -> dict:
    """``record`` with its ``sha256`` (and ``hmac`` under a key)."""
    out = {**record, "sha256": hashlib.sha256(_body(record)).hexdigest()}
    if key is not None:
        out["hmac"] = _mac(key, record)
    return out


def _last_line(f) -> tuple[bytes | None, bool]:
    """The last line of an open binary file (``None`` when empty), without its newline, and whether it had one."""
    size = f.seek(0, os.SEEK_END)
    if size == 0:
        return None, True
    block = b""
    pos = size
    while pos > 0:
        step = min(TAIL_BLOCK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step) + block
        complete = block.endswith(b"\n")
        body = block[:-1] if complete else block
        cut = body.rfind(b"\n")
        if cut >= 0:
            return body[cut + 1:], complete
    return (block[:-1], True) if block.endswith(b"\n") else (block, False)


def _parse(line: bytes) -> dict | None:
    try:
        entry = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) and all(k in entry for k in FIELDS) else None


def _read_anchor(path: Path, key: bytes | None) -> dict | None:
    """The log's anchor (None when absent), checked against ``key`` when one is given."""
    a = anchor_path(path)
    if not a.is_file():
        return None
    try:
        anchor = json.loads(a.read_bytes())
        count, head, keyed = int(anchor["count"]), anchor["head_sha256"], bool(anchor["keyed"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise EdgesslError(f"{a}: not an audit-log anchor (edited or damaged)") from None
    if key is not None:
        if not keyed:
            raise EdgesslError(f"{path}: the log was written without an audit key, but --audit-key was given")
        if not hmac.compare_digest(str(anchor.get("hmac", "")), _mac(key, anchor)):
            raise EdgesslError(f"{a}: the anchor's HMAC does not verify with this audit key (anchor rewritten, "
                               "or another key)")
    return {"count": count, "head_sha256": head, "keyed": keyed}


class AuditLog:
    """``with AuditLog(path, key_file) as log: log.append({...})``: each entry one line, fsynced, anchored."""

    def __init__(self, path: str | Path, key_file: str | Path | None = None):
        self.path = Path(path)
        self.key = read_key(key_file)
        self._f = None

    def __enter__(self) -> "AuditLog":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise EdgesslError(f"audit log {self.path}: cannot open for appending ({exc.strerror})") from None
        self._f = os.fdopen(fd, "a+b", buffering=0)  # unbuffered: other processes append too
        try:
            with self._locked():
                self._next()  # refuse a log that does not match its anchor before any study is scored
        except BaseException:
            self.__exit__()
            raise
        return self

    def _locked(self):
        return _Lock(self._f, fcntl.LOCK_EX if fcntl else 0)

    def _next(self) -> tuple[int, str | None]:
        """(seq, prev_sha256) of the next line; closes a partial last line. Under the lock."""
        anchor = _read_anchor(self.path, self.key)
        last, complete = _last_line(self._f)
        if anchor is not None and anchor["keyed"] != (self.key is not None):
            raise EdgesslError(f"{self.path}: the log is keyed (HMAC lines); pass its --audit-key")
        if last is None:
            if anchor is not None and anchor["count"]:
                raise EdgesslError(f"{self.path}: the log is empty but its anchor records {anchor['count']} "
                                   "entries (truncated); not appending (keep it as evidence, start a new log)")
            return 1, None
        if anchor is None:
            raise EdgesslError(f"{self.path}: the log has no anchor ({anchor_path(self.path).name}): truncated "
                               "or from an older edgessl; not appending (check it with `edgessl audit verify`, "
                               "start a new log)")
        entry = _parse(last) if complete else None
        if entry is None:  # a partial line left by a crash: close it, never cut it
            if not complete:
                self._f.write(b"\n")
            return anchor["count"] + 2, hashlib.sha256(last).hexdigest()
        lagging = entry["seq"] == anchor["count"] + 1 and entry["prev_sha256"] == anchor["head_sha256"]
        matches = entry["seq"] == anchor["count"] and entry["sha256"] == anchor["head_sha256"]
        if not (matches or lagging):  # lagging: a crash between the line's fsync and the anchor's rename
            raise EdgesslError(f"{self.path}: the log's last line (entry {entry['seq']}) does not match its anchor "
                               f"({anchor['count']} entries): changed outside edgessl; not appending (check it "
                               "with `edgessl audit verify`)")
        return entry["seq"] + 1, entry["sha256"]

    def append(self, entry: dict) -> None:
        with self._locked():
            seq, prev = self._next()
            record = _seal_record({**entry, "seq": seq, "prev_sha256": prev}, self.key)
            self._f.write(canonical_json(record) + b"\n")
            self._f.flush()
            os.fsync(self._f.fileno())
            anchor = {"count": seq, "head_sha256": record["sha256"], "keyed": self.key is not None}
            if self.key is not None:
                anchor["hmac"] = _mac(self.key, anchor)
            write_atomic(anchor_path(self.path), canonical_json(anchor) + b"\n")

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class _Lock:
    """``flock`` held for a ``with`` block (no-op where ``fcntl`` is missing)."""

    def __init__(self, f, mode: int):
        self.f, self.mode = f, mode

    def __enter__(self):
        if fcntl is not None:
            fcntl.flock(self.f.fileno(), self.mode)

    def __exit__(self, *exc):
        if fcntl is not None:
            fcntl.flock(self.f.fileno(), fcntl.LOCK_UN)


def is_keyed(path: str | Path) -> bool:
    """Whether the log's anchor says its lines carry HMACs."""
    anchor = _read_anchor(Path(path), None)
    return bool(anchor and anchor["keyed"])


def read_audit_log(path: str | Path) -> list[dict]:
    """Every entry, in order."""
    return [json.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def _check_line(path: Path, n: int, line: bytes, prev: str | None, key: bytes | None) -> dict:
    """The entry of line ``n``, or ``EdgesslError`` naming what is wrong with it (or with line n-1)."""
    entry = _parse(line)
    if entry is None:
        raise EdgesslError(f"{path}: line {n} is not an audit entry (edited, a partial write, or a log from an "
                           "older edgessl)")
    if entry["sha256"] != hashlib.sha256(_body(entry)).hexdigest():
        raise EdgesslError(f"{path}: line {n} was edited (its content does not match its sha256)")
    if key is not None:
        if "hmac" not in entry:
            raise EdgesslError(f"{path}: line {n} has no HMAC (written without the audit key, or rewritten)")
        if not hmac.compare_digest(str(entry["hmac"]), _mac(key, entry)):
            raise EdgesslError(f"{path}: line {n} has an HMAC that does not verify (rewritten, or another key)")
    if entry["seq"] != n:
        raise EdgesslError(f"{path}: line {n} holds entry {entry['seq']}: a line was removed, inserted or "
                           f"reordered at line {n}")
    if entry["prev_sha256"] != prev:
        raise EdgesslError(f"{path}: line {n - 1} was changed (line {n} no longer chains to it)" if n > 1
                           else f"{path}: line 1 does not start a chain (rewritten)")
    return entry


def verify_audit_log(path: str | Path, key_file: str | Path | None = None) -> int:
    """Check every line, the chain and the anchor; return the number of entries, or raise
    ``EdgesslError`` naming the first affected line (module docstring)."""
    path, key = Path(path), read_key(key_file)
    if not path.is_file():
        raise EdgesslError(f"audit log {path} not found")
    with open(path, "rb") as f, _Lock(f, fcntl.LOCK_SH if fcntl else 0):
        raw = f.read()
        anchor = _read_anchor(path, key)
    lines = raw.split(b"\n")
    complete = lines[-1] == b""
    if complete:
        lines.pop()
    if not complete:
        n = len(lines)
        raise EdgesslError(f"{path}: line {n} is incomplete (no newline: truncated or a partial write)")
    prev = None
    for n, line in enumerate(lines, 1):
        prev = _check_line(path, n, line, prev, key)["sha256"]
    n = len(lines)
    if anchor is None:
        if n == 0:
            return 0
        raise EdgesslError(f"{path}: no anchor file ({anchor_path(path).name}), so its tail cannot be checked "
                           "(removed, or a log from an older edgessl)")
    if anchor["count"] > n:
        raise EdgesslError(f"{path}: line {n + 1} is missing: the log ends at line {n} but its anchor records "
                           f"{anchor['count']} entries (truncated)")
    if anchor["count"] < n:
        raise EdgesslError(f"{path}: line {anchor['count'] + 1} is not in the anchor ({anchor['count']} entries): "
                           "appended outside edgessl")
    if n and anchor["head_sha256"] != prev:
        raise EdgesslError(f"{path}: line {n} (the last) was changed: it does not match the anchor")
    return n
