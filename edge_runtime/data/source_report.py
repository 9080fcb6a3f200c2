"""What reading a source found: frames read, kept, skipped (by reason), and the problems met.

One ``SourceReport`` per opened source; a bad frame, file or message is counted and listed here
and the read goes on. ``line()`` is the one-line summary commands print; ``to_dict()`` goes into
run summaries.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_LISTED = 20  # problems listed by name; the rest are counted


@dataclass
class SourceReport:
    source: str
    read: int = 0
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> count
    problems: list[str] = field(default_factory=list)  # "name: why", the first MAX_LISTED
    notes: list[str] = field(default_factory=list)  # about the whole source (a video that ended early)

    def skip(self, reason: str, problem: str | None = None) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1
        if problem is not None and len(self.problems) < MAX_LISTED:
            self.problems.append(problem)

    def merge(self, other: "SourceReport") -> None:
        self.read += other.read
        self.kept += other.kept
        for reason, n in other.skipped.items():
            self.skipped[reason] = self.skipped.get(reason, 0) + n
        self.problems += other.problems[: max(0, MAX_LISTED - len(self.problems))]
        self.notes += other.notes

    def line(self) -> str:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        text = f"{self.source}: read {self.read}, kept {self.kept}" + (f", skipped {skipped}" if skipped else "")
        return text + "".join(f"; {note}" for note in self.notes)

    def to_dict(self) -> dict:
        return {"source": self.source, "read": self.read, "kept": self.kept, "skipped": dict(self.skipped),
                "problems": list(self.problems), "notes": list(self.notes)}
