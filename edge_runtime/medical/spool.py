"""The DICOM node's spool: every received instance is on disk before its C-STORE is acknowledged,
and each step after that leaves a file, so a crash or a restart resumes where it stopped.

    SPOOL/received/<uid>.json   the receipt: time, dataset_sha256 of the dataset bytes as received, size,
                                calling AE title, address, association id (written first)
    SPOOL/received/<uid>.dcm    the instance: file meta + the dataset bytes as received (fsynced,
                                renamed into place, directory fsynced: then the C-STORE succeeds)
    SPOOL/results/<uid>/        records.json (one triage record per frame, and the result objects'
                                UIDs in sending order: the SR first) and the objects themselves
                                (<SOP Instance UID>.dcm); built beside it and renamed into place whole
    SPOOL/forward/<uid>.json    forwarding: attempts, the last error, the next try, when acknowledged

``<uid>`` is the SOP Instance UID (checked to be a UID, so it is a safe file name). An instance's
``phase``: ``to_score`` (no results yet) -> ``to_send`` (results not yet acknowledged by the
destination) -> ``done`` (acknowledged, or nothing to forward). When an instance is
done its ``.dcm`` is removed (the sender keeps the original); the receipt, records and results stay,
so a second C-STORE of the same SOP Instance UID is recognised as a duplicate (``has``) and never
scored twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from pathlib import Path

from ..errors import EdgesslError
from ..files import write_atomic

TO_SCORE, TO_SEND, DONE = "to_score", "to_send", "done"
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
RECORDS = "records.json"


def check_uid(uid: str) -> str:
    """``uid`` when it is a DICOM UID (digits and dots, at most 64 characters); else ``EdgesslError``."""
    if not (0 < len(uid) <= 64 and UID.match(uid)):
        raise EdgesslError(f"SOP Instance UID {uid[:80]!r} is not a DICOM UID")
    return uid


def fsync_dir(path: Path) -> None:
    """Flush a directory's entries (a rename into it) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _json(data: dict) -> bytes:
    return (json.dumps(data, indent=1, sort_keys=True) + "\n").encode()


class Spool:
    """The spool folder (module docstring). Thread-safe: receivers and the worker share it."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.received, self.results, self.forward = (self.root / d for d in ("received", "results", "forward"))
        for d in (self.received, self.results, self.forward):
            d.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def instance(self, uid: str) -> Path:
        return self.received / f"{uid}.dcm"

    def has(self, uid: str) -> bool:
        """Whether this SOP Instance UID was received before (spooled, scored or done)."""
        return self.instance(uid).exists() or (self.results / uid).is_dir()

    def store(self, uid: str, data: bytes, receipt: dict) -> bool:
        """Write a received instance durably; False (nothing written) when it is a duplicate."""
        check_uid(uid)
        with self._lock:
            if self.has(uid):
                return False
            write_atomic(self.received / f"{uid}.json", _json(receipt))
            write_atomic(self.instance(uid), data)
            fsync_dir(self.received)
        return True

    def receipt(self, uid: str) -> dict:
        path = self.received / f"{uid}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def save_results(self, uid: str, records: list[dict], objects: list) -> None:
        """The instance's records and result objects, renamed into place together (fsynced)."""
        from .sr import write_results

        staging = self.results / f".{uid}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        write_results(objects, staging)
        write_atomic(staging / RECORDS, _json({"records": records, "objects": [str(o.SOPInstanceUID) for o in objects]}))
        fsync_dir(staging)
        final = self.results / uid
        shutil.rmtree(final, ignore_errors=True)  # a crash after scoring, before the rename, left none
        os.replace(staging, final)
        fsync_dir(self.results)

    def _saved(self, uid: str) -> dict:
        path = self.results / uid / RECORDS
        return json.loads(path.read_text()) if path.is_file() else {"records": [], "objects": []}

    def records(self, uid: str) -> list[dict]:
        return self._saved(uid)["records"]

    def objects(self, uid: str) -> list[Path]:
        """The result objects of a scored instance (the SR first, then the overlays)."""
        return [self.results / uid / f"{o}.dcm" for o in self._saved(uid)["objects"]]

    def forward_state(self, uid: str) -> dict:
        path = self.forward / f"{uid}.json"
        return json.loads(path.read_text()) if path.is_file() else {}

    def set_forward_state(self, uid: str, state: dict) -> None:
        write_atomic(self.forward / f"{uid}.json", _json(state))

    def phase(self, uid: str, forwarding: bool) -> str:
        """``to_score``, ``to_send`` or ``done`` (module docstring); ``forwarding``: a destination is set."""
        if not (self.results / uid).is_dir():
            return TO_SCORE
        if forwarding and self.objects(uid) and not self.forward_state(uid).get("acknowledged"):
            return TO_SEND
        return DONE

    def finish(self, uid: str) -> None:
        """The instance is done: drop its received copy (receipt, records and results stay)."""
        self.instance(uid).unlink(missing_ok=True)

    def known(self) -> list[str]:
        """Every instance received (spooled, scored or done), oldest receipt first."""
        found = [(p.stat().st_mtime_ns, p.stem) for p in self.received.glob("*.json")]
        return [uid for _, uid in sorted(found) if self.has(uid)]
