"""``edgessl dicom-node``: a DICOM node next to the scanner that triages what it receives and sends
the results back to the PACS as DICOM, losing nothing.

    modality/PACS --C-STORE--> StorageSCP --fsync--> spool --> scorer --> SR (+ overlays) --> forwarder --C-STORE--> PACS
                                  (scp)             (spool)   (triage)        (sr)              (forward)

* **Receive** (``scp.StorageSCP``): C-ECHO and C-STORE; each instance is in the spool, fsynced,
  before its success status; a malformed one is refused; a duplicate SOP Instance UID is not
  stored or scored again; only the allowed calling AE titles (``allow_ae``) associate; TLS with a
  certificate (``tls_cert``/``tls_key``; with ``tls_ca`` peers need a certificate it signed).
* **Score** (one worker thread): the spooled instances, oldest first, in batches through triage's
  scoring loop and decision rule (``triage.score_studies``: the same scores as ``edgessl triage``);
  each decision is audited, then the records and the result objects (``sr``) are renamed into the
  spool together. An edgessl result that comes back (a PACS routing everything) is not scored.
* **Forward** (one worker thread, with ``forward``): each scored instance's objects by C-STORE;
  acknowledged -> done; failed -> retried after ``forward.backoff`` (doubling from
  ``retry_initial`` to ``retry_max`` seconds), staying in the spool meanwhile.
* **Resume**: on start, instances spooled but not scored are scored, results not acknowledged are
  sent at once. A kill at any point loses nothing acknowledged to a sender and scores nothing twice
  (results carry UIDs derived from the source, so a resend after a crash is the same object).
* **Report**: ``worklist.csv`` (triage's columns plus the node's: ``NODE_COLUMNS``) and
  ``report.html`` rewritten every ``FLUSH_S`` seconds when something changed, and on stop; every
  association, instance, decision and result in ``audit.jsonl`` (``node_audit``).
* **Stop** (``stop``; SIGTERM in the CLI): no new associations, the open ones finish, everything
  received is scored, results due are sent once more, the files are written; what is still
  unacknowledged waits in the spool for the next start.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Callable, Iterator

from ..errors import EdgesslError
from ..files import file_sha256
from ..outputs import refuse_overlap
from ..pipeline_options import BundleOptions
from ..streams.runner import RunOptions
from ..timestamps import utc_now
from . import forward as fwd
from .intended_use import IntendedUse
from .node_audit import NodeAudit
from .report_html import write_report
from .scp import StorageSCP, tls_context
from .spool import TO_SCORE, TO_SEND, Spool
from .sr import is_own_result, result_objects
from .studies import Study, file_studies
from .triage import audit_entry, decision_rule, result_context, run_info, score_studies
from .worklist import ABNORMAL, COLUMNS, SCORED, TriageRecord, rank, write_worklist

SPOOL, WORKLIST, REPORT, AUDIT = "spool", "worklist.csv", "report.html", "audit.jsonl"
NODE_COLUMNS = ("state", "received", "calling_ae", "forward_attempts", "forward_error", "next_try")
# state: received (waiting to be scored), scored (results waiting to be sent), retrying (a send
# failed; next_try says when), acknowledged (the destination has the results), done (nothing to send)
WAITING = "received"  # a record's status until its instance is scored
FLUSH_S = 5.0
FORWARD_BATCH = 32  # instances per forwarding association


@dataclass
class NodeConfig(BundleOptions):
    """``out``: the node's folder (spool, worklist, report, audit log); ``port``, ``bind``,
    ``ae_title``: where and as whom it listens; ``forward``: ``AET@HOST:PORT`` results go to
    (None: kept in the spool); ``allow_ae``: calling AE titles it accepts (empty: any);
    ``tls_cert``/``tls_key``/``tls_ca``: TLS on the listening side (with a CA, clients need a
    certificate it signed) and, with ``forward_tls``, on the forwarding side; ``operating_point``,
    ``audit_key``, ``batch_size``, ``report_images``, ``max_pixels``: as for triage; ``retry_initial``,
    ``retry_max``: the forwarding backoff in seconds."""

    out: str = ""
    port: int = 11112
    bind: str = "0.0.0.0"
    ae_title: str = "EDGESSL"
    forward: str | None = None
    allow_ae: list[str] = field(default_factory=list)
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    forward_tls: bool = False
    operating_point: str = "auto"
    audit_key: str | None = None
    batch_size: int = 8
    report_images: int = 200
    max_pixels: int = 0
    retry_initial: float = 5.0
    retry_max: float = 300.0


def _stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class DicomNode:
    """``node.start()``; ``node.stop()`` drains (module docstring). ``port`` is the one listened on."""

    def __init__(self, cfg: NodeConfig, log: Callable[[str], None] = _stderr):
        if not cfg.out:
            raise EdgesslError("dicom-node needs --out DIR (spool, worklist, report and audit log)")
        if not 0 <= cfg.port < 65536:
            raise EdgesslError(f"--port {cfg.port}: not a TCP port")
        self.cfg, self.log = cfg, log
        self.dest = fwd.Destination.parse(cfg.forward) if cfg.forward else None
        self.server_tls = tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca, server=True)
        if cfg.forward_tls and not (self.dest and cfg.tls_cert):
            raise EdgesslError("forward-tls needs --forward and tls-cert/tls-key")
        self.client_tls = tls_context(cfg.tls_cert, cfg.tls_key, cfg.tls_ca, server=False) if cfg.forward_tls else None
        refuse_overlap(cfg.out, "--out", [p for p in (cfg.audit_key, cfg.public_key, cfg.tls_key) if p],
                       sealed=[cfg.bundle])
        self.pipe = cfg.pipeline()  # refuses a tampered bundle
        self.max_pixels = self.pipe.pixel_limit(cfg.max_pixels)
        self.rule = decision_rule(self.pipe, cfg.operating_point)
        self.use = IntendedUse.from_manifest(self.pipe.bundle.manifest)
        self.run = {**run_info(self.pipe, self.rule, cfg.bundle), "node_ae": cfg.ae_title}
        self.ctx = result_context(self.pipe, self.rule, self.use, self.run)
        self.out = Path(cfg.out)
        self.spool = Spool(self.out / SPOOL)
        self.audit = NodeAudit(self.out / AUDIT, cfg.audit_key, self.run)
        self.scp = StorageSCP(cfg.ae_title, self.spool, self.audit, self._received, cfg.allow_ae, self.server_tls)
        self._cond = threading.Condition()
        self._to_score: list[str] = []
        self._to_send: dict[str, float] = {}  # uid -> monotonic time of the next try
        self._table: dict[str, list[TriageRecord]] = {}
        self._scoring_done = threading.Event()
        self._stopping = False
        self._dirty = True
        self._threads: list[threading.Thread] = []
        self.counts = {"received": 0, "scored": 0, "not_scored": 0, "acknowledged": 0, "send_failures": 0}

    # -- life cycle

    def start(self) -> None:
        """Open the audit log, resume the spool, listen, start the workers."""
        self.audit.__enter__()
        try:
            self._resume()
            self.scp.start(self.cfg.bind, self.cfg.port)
        except BaseException:
            self.audit.__exit__()
            raise
        self.audit.event("node_started", address=self.cfg.bind, port=self.port, tls=self.server_tls is not None,
                         allow_ae=list(self.cfg.allow_ae), destination=str(self.dest) if self.dest else None,
                         resumed_to_score=len(self._to_score), resumed_to_send=len(self._to_send))
        for target in (self._score_loop, self._send_loop):
            t = threading.Thread(target=target, name=f"dicom-node-{target.__name__}", daemon=True)
            t.start()
            self._threads.append(t)
        self.log(f"edgessl dicom-node: {self.cfg.ae_title} listening on {self.cfg.bind}:{self.port}"
                 f"{' (TLS)' if self.server_tls else ''}; results to {self.dest or 'the spool only'}; "
                 f"{len(self._to_score)} to score and {len(self._to_send)} to send from the spool")

    @property
    def port(self) -> int:
        return self.scp.port

    def serve(self, stop: threading.Event) -> dict:
        """Run until ``stop`` is set, writing the worklist and report as things change; then drain."""
        self.start()
        try:
            while not stop.wait(FLUSH_S):
                self.flush()
        finally:
            summary = self.stop()
        return summary

    def stop(self) -> dict:
        """Drain (module docstring) and return the run's summary."""
        self.scp.stop()
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join()
        self.flush(force=True)
        summary = {**self.run, "time": utc_now(), **self.counts, "waiting_in_spool": len(self._to_send),
                   "worklist": str(self.out / WORKLIST), "report": str(self.out / REPORT),
                   "audit_log": str(self.out / AUDIT)}
        self.audit.event("node_stopped", **self.counts, waiting_in_spool=len(self._to_send))
        self.audit.__exit__()
        return summary

    def _resume(self) -> None:
        now = time.monotonic()
        for uid in self.spool.known():
            records = [TriageRecord.from_dict(d) for d in self.spool.records(uid)]
            phase = self.spool.phase(uid, self.dest is not None)
            if phase == TO_SCORE:
                self._to_score.append(uid)
            elif phase == TO_SEND:
                self._to_send[uid] = now
            else:
                self.spool.finish(uid)  # a crash between the acknowledgement and the clean-up
            self._table[uid] = records or [self._waiting(uid)]
            self._update_state(uid)

    # -- receiving (StorageSCP threads)

    def _received(self, uid: str) -> None:
        with self._cond:
            self.counts["received"] += 1
            self._to_score.append(uid)
            self._table[uid] = [self._waiting(uid)]
            self._update_state(uid)
            self._cond.notify_all()

    def _waiting(self, uid: str) -> TriageRecord:
        return TriageRecord(str(self.spool.instance(uid)), "", instance_uid=uid, status=WAITING)

    # -- scoring (one thread)

    def _score_loop(self) -> None:
        while True:
            with self._cond:
                while not self._to_score and not self._stopping:
                    self._cond.wait()
                if not self._to_score:  # stopping, and everything received is scored
                    break
                batch, self._to_score = self._to_score[: self.cfg.batch_size], self._to_score[self.cfg.batch_size:]
            try:
                self._score(batch)
            except Exception as exc:  # keep serving: the instances stay in the spool for the next start
                self.log(f"edgessl dicom-node: error scoring {', '.join(batch)}: {type(exc).__name__}: {exc}")
        self._scoring_done.set()
        with self._cond:
            self._cond.notify_all()

    def _studies(self, uids: list[str]) -> Iterator[Study]:
        for uid in uids:
            path = self.spool.instance(uid)
            if is_own_result(path):
                yield Study(str(path), file_sha256(path), instance_uid=uid,
                            reason="an edgessl result object (its SR or overlay), not a source image")
            else:
                yield from file_studies(path, max_pixels=self.max_pixels)

    def _score(self, uids: list[str]) -> None:
        scored: dict[str, list] = {uid: [] for uid in uids}
        options = RunOptions(batch_size=self.cfg.batch_size, queue_size=self.cfg.batch_size, progress=False)
        for study, rec in score_studies(self.pipe, self._studies(uids), self.use, self.rule, None, options):
            scored[Path(study.file).stem].append((study.image, rec))
        for uid, frames in scored.items():
            self._finish_scoring(uid, frames)

    def _finish_scoring(self, uid: str, frames: list) -> None:
        from pydicom import dcmread

        records = [rec for _, rec in frames]
        error = ""
        try:
            objects = result_objects(dcmread(self.spool.instance(uid), stop_before_pixels=True), frames, self.ctx)
        except Exception as exc:  # a source header highdicom cannot build on: keep the decision, say why
            objects, error = [], f"cannot build the DICOM results: {type(exc).__name__}: {exc}"
        receipt = self.spool.receipt(uid)
        for rec in records:
            self.audit.event("triaged", **audit_entry(rec, self.run), association=receipt.get("association"),
                             results=[str(o.SOPInstanceUID) for o in objects])
        self.spool.save_results(uid, [r.to_dict() for r in records], objects)
        if error:
            self.spool.set_forward_state(uid, {"error": error})
            self.log(f"edgessl dicom-node: {uid}: {error}")
        with self._cond:
            n_scored = sum(r.status == SCORED for r in records)
            self.counts["scored" if n_scored else "not_scored"] += 1
            self._table[uid] = records
            if self.dest is not None and objects:
                self._to_send[uid] = time.monotonic()
            else:
                self.spool.finish(uid)
            self._update_state(uid)
            self._cond.notify_all()

    # -- forwarding (one thread)

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = time.monotonic()
                    due = [uid for uid, t in self._to_send.items() if t <= now]
                    if due or (self._scoring_done.is_set() and self._stopping):
                        break
                    later = [t - now for t in self._to_send.values()]
                    self._cond.wait(min(later) if later else None)
            if not due:
                return
            try:
                self._send(due[:FORWARD_BATCH])
            except Exception as exc:  # keep serving
                self.log(f"edgessl dicom-node: error forwarding: {type(exc).__name__}: {exc}")

    def _send(self, uids: list[str]) -> None:
        files = {uid: self.spool.objects(uid) for uid in uids}
        error = ""
        try:
            statuses = iter(fwd.send([f for uid in uids for f in files[uid]], self.dest, self.cfg.ae_title,
                                     self.client_tls))
        except EdgesslError as exc:
            statuses, error = None, str(exc)
        for uid in uids:
            got = [next(statuses) for _ in files[uid]] if statuses is not None else [-1] * len(files[uid])
            ok = not error and all(fwd.acknowledged(s) for s in got)
            state = self.spool.forward_state(uid)
            attempts = int(state.get("attempts", 0)) + 1
            why = error or ("" if ok else f"status {', '.join(f'0x{s:04X}' if s >= 0 else 'not sent' for s in got)}")
            results = [{"sop_instance_uid": f.stem, "dimse_status": s} for f, s in zip(files[uid], got)]
            if ok:
                self.spool.set_forward_state(uid, {"attempts": attempts, "acknowledged": utc_now(),
                                                   "destination": str(self.dest)})
                self.audit.event("result_sent", instance_uid=uid, destination=str(self.dest), attempt=attempts,
                                 status="acknowledged", error="", results=results)
                self.spool.finish(uid)
            else:
                wait = fwd.backoff(attempts, self.cfg.retry_initial, self.cfg.retry_max)
                next_try = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + wait))
                self.spool.set_forward_state(uid, {"attempts": attempts, "error": why, "next_try": next_try,
                                                   "destination": str(self.dest)})
                self.audit.event("result_sent", instance_uid=uid, destination=str(self.dest), attempt=attempts,
                                 status="failed", error=why, next_try=next_try, results=results)
            with self._cond:
                if ok:
                    self.counts["acknowledged"] += 1
                    self._to_send.pop(uid, None)
                else:
                    self.counts["send_failures"] += 1
                    self._to_send[uid] = time.monotonic() + wait
                self._update_state(uid)
        if error:
            self.log(f"edgessl dicom-node: forwarding {len(uids)} result(s) failed: {error}")

    # -- worklist and report (the caller's thread)

    def _update_state(self, uid: str) -> None:
        """Refresh an instance's node columns from the spool (under ``_cond``)."""
        receipt, state = self.spool.receipt(uid), self.spool.forward_state(uid)
        if uid in self._to_score or not (self.spool.results / uid).is_dir():
            where = "received"
        elif state.get("acknowledged"):
            where = "acknowledged"
        elif uid in self._to_send:
            where = "retrying" if state.get("error") else "scored"
        else:
            where = "done"
        extra = {"state": where, "received": receipt.get("received"), "calling_ae": receipt.get("calling_ae"),
                 "forward_attempts": state.get("attempts"), "forward_error": state.get("error") if where != "acknowledged"
                 else None, "next_try": state.get("next_try") if where == "retrying" else None}
        for rec in self._table.get(uid, []):
            rec.extra = extra
        self._dirty = True

    def flush(self, force: bool = False) -> None:
        """Write the worklist and the report when something changed since the last write."""
        with self._cond:
            if not (self._dirty or force):
                return
            self._dirty = False
            records = rank([r for recs in self._table.values() for r in recs])
            for r in records[self.cfg.report_images:]:  # bound the memory of a node that runs for months
                r.thumbnail = r.heatmap = None
        n_scored = sum(r.status == SCORED for r in records)
        point = self.rule.point.to_dict() if self.rule.point else None
        if point:
            point["threshold"] = self.rule.threshold
        summary = {**self.run, "time": utc_now(), "n_records": len(records), "n_scored": n_scored,
                   "n_not_scored": len(records) - n_scored, "n_abnormal": sum(r.decision == ABNORMAL for r in records),
                   "operating_point": point, "test": None}
        write_worklist(records, self.out / WORKLIST, COLUMNS + NODE_COLUMNS)
        write_report(records, summary, self.out / REPORT, self.cfg.report_images)


def run_node(cfg: NodeConfig, stop: threading.Event) -> dict:
    """Serve until ``stop`` is set; the run's summary."""
    return DicomNode(cfg).serve(stop)
