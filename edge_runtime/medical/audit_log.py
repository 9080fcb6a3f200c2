"""An append-only audit log whose every line is verifiable, whose deletion shows, and whose crashes are
recorded: one canonical JSON object per line, hash-chained, anchored, optionally keyed; never truncated.

Line ``n`` is the canonical JSON (``jsonio.canonical_json``: sorted keys, no whitespace) of the entry plus::

    seq         the entry's number (1-based)
    prev_sha256 the previous entry's sha256 (null for entry 1)
    sha256      sha256(canonical JSON of the line without sha256 and hmac)
    hmac        HMAC-SHA256(key, the same bytes)          (only with a key: ``--audit-key FILE``)

A line is checked byte for byte: it must be exactly the canonical JSON of what it holds, so a key
given twice (``{"decision": "abnormal", ..., "decision": "normal"}``), reordered keys or added
whitespace are edits, even when the parsed content would hash the same.

**The anchor** ``<log>.anchor`` is the keyed checkpoint: ``{"count", "lines", "head_sha256",
"keyed", "pending"[, "hmac"]}`` (entries, physical lines, the chain head, whether lines carry
HMACs, the line being appended), replaced atomically. With a key its HMAC cannot be forged, so
a wipe or a truncation of the log cannot be made to look intact: a log verifies only with its
anchor, and never when empty. What the log and its anchor cannot show is their deletion
together: triage records each study's entry (``seq`` and ``sha256``) in the worklist and the
report, and ``audit_evidence`` checks those against the log.

**Appends** (``AuditLog.append``), under an exclusive ``flock`` on the log's folder (so concurrent
runs interleave whole lines and lose none): the anchor first announces the line (``pending``:
its seq and sha256), then the line is written and fsynced, then the anchor records it. A log is
created with its first line (never empty). An append refuses a log whose tail does not match its
anchor, so a tampered, truncated or wiped log is never extended, and nothing appended from
outside is ever adopted.

**Crashes.** A process killed mid-append leaves the anchor's ``pending`` and one of: nothing
written, a torn (partial) line, or the whole line without the anchor's record of it.
``verify_audit_log`` reports each as ``torn at line N (crash)``; the next append repairs it,
explicitly: it closes a torn line with a newline and keeps it (it is then skipped, named by hash
in the repair line), and writes a ``crash recovery`` entry saying what happened before its own.
A whole line is kept only because the keyed anchor announced its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import EdgesslError
from ..files import read_regular, write_atomic
from ..jsonio import canonical_json, parse_json

try:  # POSIX (every device we target); on other systems appends are not locked against each other
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

TAIL_BLOCK = 1 << 16
MIN_KEY_BYTES = 16
FIELDS = ("seq", "prev_sha256", "sha256")
RECOVERY = "crash recovery"  # the event of the entry that records a repaired crash
REPAIRED = "the next append repairs it with an audit line (a triage run)"


def anchor_path(path: str | Path) -> Path:
    return Path(f"{path}.anchor")


def read_key(path: str | Path | None) -> bytes | None:
    """The HMAC key: the file's bytes (at least ``MIN_KEY_BYTES``)."""
    if path is None:
        return None
    p = Path(path)
    if not p.exists():
        raise EdgesslError(f"audit key {p} not found (make one: head -c 32 /dev/urandom > {p})")
    key = read_regular(p, "audit key")
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


def _entry(line: bytes) -> dict | None:
    """The entry ``line`` holds when it is one as edgessl writes them (canonical JSON with its chain
    fields), else None."""
    try:
        entry = parse_json(line, "")
    except EdgesslError:
        return None
    if not isinstance(entry, dict) or not all(k in entry for k in FIELDS) or canonical_json(entry) != line:
        return None
    return entry


@dataclass
class Anchor:
    """The log's keyed checkpoint (module docstring)."""

    count: int
    lines: int
    head: str | None
    keyed: bool
    pending: dict | None = None  # {"seq", "sha256"} of the line being appended

    def record(self) -> dict:
        return {"count": self.count, "lines": self.lines, "head_sha256": self.head, "keyed": self.keyed,
                "pending": self.pending}


def _read_anchor(path: Path, key: bytes | None) -> Anchor | None:
    """The log's anchor (None when absent), checked against ``key`` when one is given."""
    a = anchor_path(path)
    if not os.path.lexists(a):
        return None
    try:
        record = parse_json(read_regular(a, "audit-log anchor"), str(a))
        pending = record.get("pending")
        anchor = Anchor(int(record["count"]), int(record.get("lines", record["count"])), record["head_sha256"],
                        bool(record["keyed"]), pending)
        if pending is not None and not (isinstance(pending.get("seq"), int) and isinstance(pending.get("sha256"), str)):
            raise ValueError
    except (EdgesslError, AttributeError, KeyError, TypeError, ValueError):
        raise EdgesslError(f"{a}: not an audit-log anchor (edited or damaged)") from None
    if key is not None:
        if not anchor.keyed:
            raise EdgesslError(f"{path}: the log was written without an audit key, but --audit-key was given")
        if not hmac.compare_digest(str(record.get("hmac", "")), _mac(key, record)):
            raise EdgesslError(f"{a}: the anchor's HMAC does not verify with this audit key (anchor rewritten, "
                               "or another key)")
    return anchor


def _write_anchor(path: Path, anchor: Anchor, key: bytes | None) -> None:
    record = anchor.record()
    if key is not None:
        record["hmac"] = _mac(key, record)
    write_atomic(anchor_path(path), canonical_json(record) + b"\n")


def _tail(f) -> tuple[bytes | None, bytes]:
    """The last complete line of an open binary file (without its newline; None when there is none)
    and the bytes after it (``b""`` unless a crash cut a line)."""
    size = f.seek(0, os.SEEK_END)
    step = TAIL_BLOCK
    while True:
        start = max(0, size - step)
        f.seek(start)
        data = f.read(size - start)
        end = data.rfind(b"\n")
        before = data.rfind(b"\n", 0, max(end, 0))
        if start == 0 or before >= 0:
            if end < 0:
                return None, data
            return data[before + 1:end], data[end + 1:]
        step *= 2


class _FolderLock:
    """``flock`` on the folder holding the log, for a ``with`` block: one lock for the log, its
    anchor and the log's creation (no-op where ``fcntl`` is missing)."""

    def __init__(self, folder: Path, exclusive: bool):
        self.folder, self.mode = folder, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) if fcntl else 0

    def __enter__(self):
        self.fd = os.open(self.folder, os.O_RDONLY)
        if fcntl is not None:
            fcntl.flock(self.fd, self.mode)

    def __exit__(self, *exc):
        os.close(self.fd)


@dataclass
class _Plan:
    """What the next append starts from, and the crash it repairs first (``recovery``)."""

    anchor: Anchor
    close_torn: bool = False
    recovery: dict | None = None


class AuditLog:
    """``with AuditLog(path, key_file) as log: seq, sha256 = log.append({...})``: each entry one
    line, fsynced, announced and recorded in the anchor (module docstring)."""

    def __init__(self, path: str | Path, key_file: str | Path | None = None):
        self.path = Path(path)
        self.key = read_key(key_file)
        self._f = None

    def __enter__(self) -> "AuditLog":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgesslError(f"audit log {self.path}: cannot create its folder ({exc.strerror})") from None
        with self._locked():
            self._plan()  # refuse a log that does not match its anchor before any study is scored
        return self

    def _locked(self) -> _FolderLock:
        return _FolderLock(self.path.parent, exclusive=True)

    def _file(self):
        """The log open for appending (None while it does not exist)."""
        if self._f is None and os.path.lexists(self.path):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND)
            except OSError as exc:
                raise EdgesslError(f"audit log {self.path}: cannot open for appending ({exc.strerror})") from None
            self._f = os.fdopen(fd, "a+b", buffering=0)  # unbuffered: other processes append too
        return self._f

    def _plan(self) -> _Plan:
        """Where the next append starts (``EdgesslError`` for a log it must not extend). Under the lock."""
        anchor, f = _read_anchor(self.path, self.key), self._file()
        if anchor is not None and anchor.keyed != (self.key is not None):
            raise EdgesslError(f"{self.path}: the log is keyed (HMAC lines); pass its --audit-key"
                               if anchor.keyed else f"{self.path}: the log was written without an audit key; "
                               "keyed and unkeyed lines do not mix (start a new log)")
        refuse = f"{self.path}: {{}}; not appending (check it with `edgessl audit verify`; keep it as evidence and " \
                 "start a new log)"
        if f is None:
            if anchor is None:
                return _Plan(Anchor(0, 0, None, self.key is not None))
            if anchor.count == 0 and anchor.pending is not None:  # a crash before the first line was created
                return _Plan(anchor, recovery=_recovery(f"entry {anchor.pending['seq']} was announced but never "
                                                        "written (the process stopped before writing it)"))
            raise EdgesslError(refuse.format(f"the log is missing but its anchor records {anchor.count} entries "
                                             "(deleted)"))
        last, torn = _tail(f)
        if last is None and not torn:
            raise EdgesslError(refuse.format("the log is empty (wiped: a log edgessl writes is never empty)"))
        if anchor is None:
            raise EdgesslError(refuse.format(f"the log has no anchor ({anchor_path(self.path).name}): removed, or "
                                             "from an older edgessl"))
        entry = None if last is None else _entry(last)
        at_head = entry is not None and entry["seq"] == anchor.count and entry["sha256"] == anchor.head
        pending = anchor.pending
        if pending is None and at_head and not torn:
            return _Plan(anchor)
        if pending is not None:
            announced = _announced(entry, pending, anchor) if not torn else None
            if at_head and not torn:
                return _Plan(anchor, recovery=_recovery(f"entry {pending['seq']} was announced but never written "
                                                        "(the process stopped before writing it)"))
            if announced is not None:
                return _Plan(announced, recovery=_recovery(f"entry {pending['seq']} was written but its anchor not "
                                                           "updated (the process stopped in between); kept"))
            if at_head and torn:
                whole = _announced(_entry(torn), pending, anchor)
                if whole is not None:
                    return _Plan(whole, close_torn=True, recovery=_recovery(
                        f"entry {pending['seq']} was written without its newline (the process stopped); kept"))
                line = anchor.lines + 1
                return _Plan(Anchor(anchor.count, line, anchor.head, anchor.keyed), close_torn=True,
                             recovery=_recovery(f"line {line} is torn: entry {pending['seq']} was cut mid-write (the "
                                                "process stopped); kept as it is and skipped",
                                                torn_line=line, torn_sha256=hashlib.sha256(torn).hexdigest(),
                                                torn_bytes=len(torn)))
        seq = "none" if entry is None else entry["seq"]
        raise EdgesslError(refuse.format(f"the log's last line (entry {seq}) does not match its anchor "
                                         f"({anchor.count} entries): changed outside edgessl"))

    def append(self, entry: dict) -> tuple[int, str]:
        """Append ``entry`` (repairing a crash first, with its own entry); returns its seq and sha256."""
        with self._locked():
            _remove_stale_temporaries(self.path)
            plan = self._plan()
            if plan.close_torn:
                self._write_bytes(b"\n")
            anchor = plan.anchor
            if plan.recovery is not None:
                anchor = self._write(plan.recovery, anchor)
            anchor = self._write(entry, anchor)
        return anchor.count, anchor.head

    def _write(self, entry: dict, anchor: Anchor) -> Anchor:
        """Announce, write and record one line after ``anchor``; returns the new anchor."""
        record = _seal_record({**entry, "seq": anchor.count + 1, "prev_sha256": anchor.head}, self.key)
        keyed = self.key is not None
        _write_anchor(self.path, Anchor(anchor.count, anchor.lines, anchor.head, keyed,
                                        {"seq": record["seq"], "sha256": record["sha256"]}), self.key)
        line = canonical_json(record) + b"\n"
        if self._file() is None:
            write_atomic(self.path, line)  # a log is created with its first line, never empty
        else:
            self._write_bytes(line)
        done = Anchor(record["seq"], anchor.lines + 1, record["sha256"], keyed)
        _write_anchor(self.path, done, self.key)
        return done

    def _write_bytes(self, data: bytes) -> None:
        try:
            self._f.write(data)
            os.fsync(self._f.fileno())
        except OSError as exc:
            raise EdgesslError(f"audit log {self.path}: cannot append ({exc.strerror})") from None

    def __exit__(self, *exc) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def _recovery(text: str, **torn) -> dict:
    return {"event": RECOVERY, "crash": text, **torn}


def _announced(entry: dict | None, pending: dict, anchor: Anchor) -> Anchor | None:
    """The anchor recording ``entry`` when it is the line the anchor announced (after its head)."""
    if entry is None or entry["seq"] != pending["seq"] or entry["sha256"] != pending["sha256"] or \
            entry["prev_sha256"] != anchor.head or pending["seq"] != anchor.count + 1:
        return None
    return Anchor(entry["seq"], anchor.lines + 1, entry["sha256"], anchor.keyed)


def _remove_stale_temporaries(path: Path) -> None:
    """The anchor's (and a first line's) temporary files left by a killed append (appends hold the lock)."""
    for p in path.parent.glob(f".{path.name}.*.tmp"):
        p.unlink(missing_ok=True)


def is_keyed(path: str | Path) -> bool:
    """Whether the log's anchor says its lines carry HMACs."""
    anchor = _read_anchor(Path(path), None)
    return bool(anchor and anchor.keyed)


def read_audit_log(path: str | Path) -> list[dict]:
    """Every entry, in order (a repaired torn line, which holds none, is passed over)."""
    return [e for line in read_regular(path, "audit log").splitlines() if (e := _entry(line)) is not None]


def _check_line(path: Path, n: int, line: bytes, entries: list[dict], key: bytes | None) -> dict:
    """The entry of line ``n`` after ``entries``, or ``EdgesslError`` naming what is wrong with it (or
    with the line before)."""
    try:
        entry = parse_json(line, "")
    except EdgesslError as exc:
        reason = str(exc).removeprefix(": ")
        raise EdgesslError(f"{path}: line {n} is not an audit entry as edgessl writes them ({reason}): edited, "
                           "or a partial write") from None
    if not isinstance(entry, dict) or not all(k in entry for k in FIELDS):
        raise EdgesslError(f"{path}: line {n} is not an audit entry (edited, or a log from an older edgessl)")
    if canonical_json(entry) != line:
        raise EdgesslError(f"{path}: line {n} was edited (its bytes are not the canonical JSON edgessl writes: "
                           "keys reordered, repeated or reformatted)")
    if entry["sha256"] != hashlib.sha256(_body(entry)).hexdigest():
        raise EdgesslError(f"{path}: line {n} was edited (its content does not match its sha256)")
    if key is not None:
        if "hmac" not in entry:
            raise EdgesslError(f"{path}: line {n} has no HMAC (written without the audit key, or rewritten)")
        if not hmac.compare_digest(str(entry["hmac"]), _mac(key, entry)):
            raise EdgesslError(f"{path}: line {n} has an HMAC that does not verify (rewritten, or another key)")
    if entry["seq"] != len(entries) + 1:
        raise EdgesslError(f"{path}: line {n} holds entry {entry['seq']}: a line was removed, inserted or "
                           f"reordered at line {n}")
    if entry["prev_sha256"] != (entries[-1]["sha256"] if entries else None):
        raise EdgesslError(f"{path}: line {n - 1} was changed (line {n} no longer chains to it)" if entries
                           else f"{path}: line {n} does not start a chain (rewritten)")
    return entry


def _repairs(nxt: bytes | None, n: int, line: bytes) -> bool:
    """Whether ``nxt`` is the crash-recovery entry that names line ``n`` (torn, with these bytes)."""
    entry = None if nxt is None else _entry(nxt)
    return entry is not None and entry.get("event") == RECOVERY and entry.get("torn_line") == n and \
        entry.get("torn_sha256") == hashlib.sha256(line).hexdigest()


def verified_entries(path: str | Path, key_file: str | Path | None = None) -> list[dict]:
    """Every entry, after checking every line, the chain and the anchor (and every HMAC with a key);
    ``EdgesslError`` naming the first affected line (module docstring)."""
    path, key = Path(path), read_key(key_file)
    if not os.path.lexists(path):
        raise EdgesslError(f"audit log {path} not found" + (" (deleted? its anchor is still there)"
                                                            if os.path.lexists(anchor_path(path)) else ""))
    with _FolderLock(path.parent, exclusive=False):
        raw = read_regular(path, "audit log")
        anchor = _read_anchor(path, key)
    if not raw:
        raise EdgesslError(f"{path}: line 1 is missing: the log is empty but its anchor records {anchor.count} "
                           "entries (truncated)" if anchor else
                           f"{path}: the log is empty and has no anchor (wiped: a log edgessl writes is never empty)")
    lines = raw.split(b"\n")
    torn = lines.pop()  # b"" when the log ends with a newline
    entries: list[dict] = []
    for n, line in enumerate(lines, 1):
        if _entry(line) is None and _repairs(lines[n] if n < len(lines) else None, n, line):
            continue  # a torn line a later append kept and named
        entries.append(_check_line(path, n, line, entries, key))
    _check_tail(path, anchor, entries, len(lines), torn)
    return entries


def _check_tail(path: Path, anchor: Anchor | None, entries: list[dict], lines: int, torn: bytes) -> None:
    """The end of the log against its anchor: the count, the head, a crash in progress."""
    n, head = len(entries), entries[-1]["sha256"] if entries else None
    if anchor is None:
        raise EdgesslError(f"{path}: no anchor file ({anchor_path(path).name}), so its tail cannot be checked "
                           "(removed, or a log from an older edgessl)")
    pending, at_head = anchor.pending, (n, head) == (anchor.count, anchor.head)
    if pending is not None and at_head and lines == anchor.lines:
        what = (f"entry {pending['seq']} was cut mid-write" if torn else
                f"entry {pending['seq']} was announced but never written")
        raise EdgesslError(f"{path}: torn at line {lines + 1} (crash): {what}; {REPAIRED}")
    if pending is not None and not torn and n == anchor.count + 1 and \
            (entries[-1]["seq"], head) == (pending["seq"], pending["sha256"]):
        raise EdgesslError(f"{path}: torn at line {lines} (crash): entry {pending['seq']} was written but its "
                           f"anchor not updated; {REPAIRED}")
    if torn:
        raise EdgesslError(f"{path}: line {lines + 1} is incomplete (no newline: truncated or a partial write)")
    if anchor.count > n:
        raise EdgesslError(f"{path}: line {lines + 1} is missing: the log ends at line {lines} but its anchor "
                           f"records {anchor.count} entries (truncated)")
    if anchor.count < n:
        raise EdgesslError(f"{path}: line {lines - (n - anchor.count) + 1} is not in the anchor ({anchor.count} "
                           "entries): appended outside edgessl (never adopted)")
    if head != anchor.head:
        raise EdgesslError(f"{path}: line {lines} (the last) was changed: it does not match the anchor")
    if lines != anchor.lines:
        raise EdgesslError(f"{path}: the log has {lines} lines but its anchor records {anchor.lines} (a line was "
                           "added or removed outside edgessl)")


def verify_audit_log(path: str | Path, key_file: str | Path | None = None) -> int:
    """``verified_entries``' count."""
    return len(verified_entries(path, key_file))
