"""A worklist or a report checked against the audit log it came with: the evidence that outlives a
log deleted together with its anchor.

Triage records, for every study, the audit entry it appended (its ``seq`` and ``sha256``): in
``worklist.csv``'s ``audit_seq``/``audit_sha256`` columns and on ``report.html``'s rows
(``data-audit-seq``/``data-audit-sha256`` attributes, beside ``data-decision`` and
``data-file-sha256``). ``check_evidence`` finds each in the verified log with the same decision
and file hash, so a log replaced by a fresh one (its chain restarted at 1), truncated, or rewritten
is named, and so is a worklist or report edited after the run.
"""

from __future__ import annotations

import csv
import html
import io
import re
from pathlib import Path

from ..errors import EdgesslError
from ..files import read_regular

ROW = re.compile(r"<tr\b[^>]*\bdata-audit-seq=[^>]*>")
ATTRIBUTE = re.compile(r'\bdata-([a-z0-9-]+)="([^"]*)"')


def _worklist_rows(text: str, path: Path) -> list[dict]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows or not {"audit_seq", "audit_sha256", "decision", "file_sha256"} <= set(rows[0]):
        raise EdgesslError(f"{path}: not a worklist that names its audit entries (audit_seq, audit_sha256 "
                           "columns; made by an older edgessl?)")
    return rows


def _report_rows(text: str, path: Path) -> list[dict]:
    rows = [{k.replace("-", "_"): html.unescape(v) for k, v in ATTRIBUTE.findall(tag)} for tag in ROW.findall(text)]
    if not rows:
        raise EdgesslError(f"{path}: not a report that names its audit entries (made by an older edgessl?)")
    return rows


def evidence_rows(path: str | Path) -> list[dict]:
    """The rows of a worklist (``.csv``) or report (``.html``): each with ``audit_seq``,
    ``audit_sha256``, ``decision`` and ``file_sha256``."""
    path = Path(path)
    try:
        text = read_regular(path, "worklist or report").decode("utf-8")
    except UnicodeDecodeError:
        raise EdgesslError(f"{path}: not UTF-8 text (not a worklist or report)") from None
    return _report_rows(text, path) if path.suffix.lower() in (".html", ".htm") else _worklist_rows(text, path)


def check_evidence(entries: list[dict], path: str | Path) -> int:
    """Every row of the worklist or report at ``path`` found in ``entries`` (a verified log's); returns
    how many rows; ``EdgesslError`` naming the first row the log does not hold as written."""
    by_seq = {e["seq"]: e for e in entries}
    rows = evidence_rows(path)
    for i, row in enumerate(rows, 1):
        seq_text, sha = row.get("audit_seq") or "", row.get("audit_sha256") or ""
        if not seq_text.isdigit():
            raise EdgesslError(f"{path}: row {i} names no audit entry (audit_seq {seq_text!r})")
        seq = int(seq_text)
        entry = by_seq.get(seq)
        if entry is None:
            raise EdgesslError(f"{path}: row {i} names audit entry {seq}, but the log holds {len(entries)} entries: "
                               "the log was truncated, or deleted and restarted")
        if entry["sha256"] != sha:
            raise EdgesslError(f"{path}: row {i} names audit entry {seq} with sha256 {sha[:12]}, but the log's entry "
                               f"{seq} is {entry['sha256'][:12]}: the log was replaced or rewritten (or the row "
                               "edited)")
        for field in ("decision", "file_sha256"):
            if (entry.get(field) or "") != (row.get(field) or ""):
                raise EdgesslError(f"{path}: row {i} says {field} {row.get(field)!r} but its audit entry {seq} says "
                                   f"{entry.get(field)!r}: edited after the run")
    return len(rows)
