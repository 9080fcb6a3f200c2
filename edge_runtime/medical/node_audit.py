"""The DICOM node's lines in the audit log: what happened on the wire, beside each triage decision.

Every line the node writes carries ``event`` (one of ``EVENTS``), ``time``, ``run_id``,
``tool_version`` and ``node_ae``, and is appended through ``audit_log.AuditLog`` (hash-chained,
anchored, optionally keyed), so ``edgessl audit verify`` checks the wire and the decisions together:

    node_started          the node's address, port, TLS, allowed AE titles, destination, bundle hash
    association_accepted  association, calling_ae, called_ae, address, port, tls
    association_rejected  calling_ae, called_ae, address, port, reason
    association_released  association, instances (received on it)     (or association_aborted)
    instance_received     association, calling_ae, address, sop_class_uid, instance_uid, study_uid,
                          series_uid, transfer_syntax, dataset_bytes, dataset_sha256 (of the dataset bytes as received),
                          status (stored / duplicate / refused), dimse_status, reason
    triaged               the triage decision (``triage.audit_entry``: file, frame, scores, rule, ...)
    result_sent           instance_uid (the source), results [{sop_class_uid, sop_instance_uid,
                          dimse_status}], destination, attempt, status (acknowledged / failed), error,
                          next_try (when failed)
    node_stopped          counts of the run

Appends from the receiving threads and the worker are serialised here (``flock`` orders processes,
not the threads of one process).
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..timestamps import utc_now
from .audit_log import FIELDS, AuditLog

EVENTS = ("node_started", "association_accepted", "association_rejected", "association_released",
          "association_aborted", "instance_received", "triaged", "result_sent", "node_stopped")
RESERVED = {*FIELDS, "hmac"}


class NodeAudit:
    """``with NodeAudit(path, key_file, run) as audit: audit.event("instance_received", ...)``."""

    def __init__(self, path: str | Path, key_file: str | Path | None, run: dict):
        self.log = AuditLog(path, key_file=key_file)
        self.run = run
        self._lock = threading.Lock()

    def __enter__(self) -> "NodeAudit":
        self.log.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        with self._lock:
            self.log.__exit__(*exc)

    def event(self, kind: str, **fields) -> None:
        """Append one line of ``kind`` (one of ``EVENTS``) with ``fields``."""
        if kind not in EVENTS:
            raise ValueError(f"unknown audit event {kind!r}")
        if RESERVED & fields.keys():  # the log's own fields would silently replace them
            raise ValueError(f"audit fields {sorted(RESERVED & fields.keys())} are the audit log's own")
        with self._lock:
            self.log.append({**self.run, "time": utc_now(), "event": kind, **fields})
