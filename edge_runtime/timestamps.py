"""The one timestamp format edgessl writes (manifests, reports, operating points, audit logs)."""

from __future__ import annotations

from datetime import datetime, timezone


def utc_now() -> str:
    """Now, in UTC, as ISO 8601 with milliseconds and a ``Z``: ``2026-12-01T08:52:22.123Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
