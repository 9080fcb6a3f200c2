"""The source string: ``PATH`` or ``PATH?key=value&key=value`` (what ``--data`` takes).

The keys are ``SourceOptions``'s fields (``topic``, ``every``, ``fps``, ``max_frames``, ``dedup``,
``dicom_modality``); the CLI's ``--topic``/``--every``/... options write them, so one string names the
data exactly (it is saved in run configs and cache keys). ``format_source`` writes only the keys
that differ from the defaults, in a fixed order, so equal selections give equal strings.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from urllib.parse import parse_qsl, urlencode

from ..errors import EdgesslError

DEDUP_THRESHOLD = 1.0  # mean |difference| in grey levels (of 255) between 32x32 thumbnails


@dataclass(frozen=True)
class SourceOptions:
    """How to read footage and DICOM: which topic, which frames, which modalities."""

    topic: str = ""  # bag topic; "" = the only image topic
    every: int = 1  # keep every N-th frame
    fps: float = 0.0  # keep at most this many frames per second of footage (0: no limit)
    max_frames: int = 0  # stop after keeping this many frames per video/bag (0: no limit)
    dedup: float = DEDUP_THRESHOLD  # skip a frame this close to the last kept one (0: keep all)
    dicom_modality: str = ""  # DICOM modalities to keep, comma-separated ("" = all)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise EdgesslError(f"every={self.every}: must be 1 or more")
        if self.fps < 0 or self.max_frames < 0 or self.dedup < 0:
            raise EdgesslError("fps, max_frames and dedup must be 0 or more")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m.strip().upper() for m in self.dicom_modality.split(",") if m.strip())


def parse_source(text: str) -> tuple[str, SourceOptions]:
    """``PATH?k=v&...`` to the path and its options; a bare path gets the defaults."""
    path, _, query = text.partition("?")
    if not query:
        return path, SourceOptions()
    types = {f.name: f.type for f in fields(SourceOptions)}
    values = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in types:
            raise EdgesslError(f"{text}: unknown source option {key!r} (known: {', '.join(types)})")
        try:
            values[key] = {"int": int, "float": float}.get(types[key], str)(value)
        except ValueError:
            raise EdgesslError(f"{text}: {key}={value!r} is not a {types[key]}") from None
    return path, SourceOptions(**values)


def format_source(path: str, options: SourceOptions) -> str:
    """The canonical source string of ``path`` read with ``options``."""
    default = SourceOptions()
    changed = {f.name: getattr(options, f.name) for f in fields(SourceOptions)
               if getattr(options, f.name) != getattr(default, f.name)}
    return f"{path}?{urlencode(changed, safe='/,')}" if changed else path


def with_selection(text: str, given: dict) -> str:
    """``text`` with the ``SourceOptions`` fields in ``given`` written into its options."""
    path, options = parse_source(text)
    return format_source(path, replace(options, **given))
