"""The triage worklist: one record per study, ranked from most to least abnormal, written as CSV.

Each row names the audit entry of its study (``audit_seq``, ``audit_sha256``), so the worklist is
evidence of the log (``audit_evidence``).

Ranking: scored studies by raw score, highest first (ties by file and frame, so the order is
reproducible); rank 1 is the most abnormal. Studies that could not be scored follow, without a
rank, with their reason: they need a reader's attention as much as the flagged ones.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Sequence

import numpy as np

from ..files import write_atomic

SCORED, NOT_SCORED = "scored", "not_scored"
ABNORMAL, NORMAL = "abnormal", "normal"
COLUMNS = ("rank", "file", "frame", "study_uid", "series_uid", "instance_uid", "modality", "score",
           "raw_score", "threshold", "decision", "status", "reason", "label", "file_sha256", "audit_seq",
           "audit_sha256")
IMAGES = ("thumbnail", "heatmap")


@dataclass
class TriageRecord:
    """One study's outcome. ``score``/``threshold`` are normalised (the normal-only threshold is 1.0)."""

    file: str
    file_sha256: str
    frame: int | None = None
    study_uid: str = ""
    series_uid: str = ""
    instance_uid: str = ""
    modality: str = ""
    status: str = NOT_SCORED
    reason: str = ""
    score: float | None = None
    raw_score: float | None = None
    threshold: float | None = None
    decision: str = ""
    label: str | None = None
    anomalous: bool | None = None  # the label's meaning, when a label is known
    image_sha256: str = ""
    class_name: str | None = None  # a bundle with a classifier head: its predicted class
    probabilities: dict[str, float] | None = field(default=None, repr=False)  # and every class's probability
    rank: int | None = None
    audit_seq: int | None = None  # the audit entry of this record (``audit_evidence`` checks it)
    audit_sha256: str = ""
    thumbnail: np.ndarray | None = field(default=None, repr=False)  # small uint8 grey/RGB
    heatmap: np.ndarray | None = field(default=None, repr=False)  # small float32 anomaly map (normalised)
    extra: dict = field(default_factory=dict)  # columns a caller adds (the DICOM node's state)

    def row(self, columns: Sequence[str] = COLUMNS) -> dict:
        values = {**{f.name: getattr(self, f.name) for f in fields(self)}, **self.extra}
        return {c: "" if values.get(c) is None else values[c] for c in columns}

    def to_dict(self) -> dict:
        """The JSON-able fields (no images, no extra columns)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in IMAGES + ("extra",)}

    @classmethod
    def from_dict(cls, d: dict) -> "TriageRecord":
        return cls(**{k: v for k, v in d.items() if k in {f.name for f in fields(cls)}})


def rank(records: list[TriageRecord]) -> list[TriageRecord]:
    """Scored records by raw score (highest first, ranked 1..n), then the unscored ones."""
    scored = sorted((r for r in records if r.status == SCORED),
                    key=lambda r: (-r.raw_score, r.file, -1 if r.frame is None else r.frame))
    for i, r in enumerate(scored, 1):
        r.rank = i
    return scored + [r for r in records if r.status != SCORED]


def worklist_csv(records: list[TriageRecord], columns: Sequence[str] = COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow(r.row(columns))
    return buf.getvalue()


def write_worklist(records: list[TriageRecord], path: Path, columns: Sequence[str] = COLUMNS) -> None:
    """Write the ranked records (``rank`` first) atomically; ``columns`` beyond ``COLUMNS`` come from
    each record's ``extra``."""
    write_atomic(Path(path), worklist_csv(records, columns).encode())
