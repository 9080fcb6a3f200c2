"""The source string: ``PATH`` or ``PATH?key=value&key=value`` (what ``--data`` takes).

The keys are ``SourceOptions``'s fields (``topic``, ``every``, ``fps``, ``max_frames``, ``dedup``,
``modality``); the CLI's ``--topic``/``--every``/... options write them, so one string names the
data exactly (it is saved in run configs and cache keys). ``format_source`` writes only the keys
that differ from the defaults, in a fixed order, so equal selections give equal strings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from urllib.parse import parse_qsl, urlencode

from ..config import option
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
    modality: str = ""  # DICOM modalities to keep, comma-separated ("" = all)

    def __post_init__(self) -> None:
        if self.every < 1:
            raise EdgesslError(f"every={self.every}: must be 1 or more")
        if self.fps < 0 or self.max_frames < 0 or self.dedup < 0:
            raise EdgesslError("fps, max_frames and dedup must be 0 or more")

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m.strip().upper() for m in self.modality.split(",") if m.strip())


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


@dataclass
class SourceFlags:
    """The command-line spelling of ``SourceOptions`` (a training command's ``--topic``, ``--every``,
    ...): each given one is written into ``--data``'s string, one left out (None) keeps the string's."""

    topic: str | None = option(None, "bag image topic (default: the bag's only image topic)")
    every: int | None = option(None, "keep every N-th frame of footage (default: 1)", metavar="N")
    fps: float | None = option(None, "keep at most F frames per second of footage (bag stamps, video frame rate)",
                               metavar="F")
    max_frames: int | None = option(None, "keep at most N frames per video or bag", metavar="N")
    dedup: float | None = option(None, f"skip a frame within T grey levels (32x32 thumbnails) of the last kept one "
                                       f"(default: {DEDUP_THRESHOLD}; 0 keeps every frame)", metavar="T")
    dicom_modality: str | None = option(None, "keep only these DICOM modalities, e.g. CR,DX", metavar="M[,M]")


def with_flags(text: str, flags: SourceFlags) -> str:
    """``text`` with the given flags written into its options."""
    path, options = parse_source(text)
    given = {("modality" if k == "dicom_modality" else k): v for k, v in asdict(flags).items() if v is not None}
    return format_source(path, replace(options, **given))
