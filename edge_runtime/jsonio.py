"""JSON as edgessl writes and trusts it: canonical bytes out, a strict parse of untrusted bytes in.

Canonical JSON (sorted keys, no whitespace, UTF-8) is what seals, signatures and audit lines are
computed over. ``parse_json`` reads bytes that anyone may have written (a manifest, a detector
record, an audit line) and turns every malformed input into one ``EdgesslError`` line: bytes that
are not UTF-8, text that is not JSON, nesting too deep to parse, and an object with a key given
twice (``{"decision": "abnormal", ..., "decision": "normal"}``: a reader and a parser could
disagree about which one counts).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import EdgesslError


def canonical_json(obj) -> bytes:
    """The bytes the seal is computed over: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class DuplicateKey(ValueError):
    pass


def _unique(pairs: list[tuple[str, Any]]) -> dict:
    out = dict(pairs)
    if len(out) != len(pairs):
        seen: set[str] = set()
        twice = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise DuplicateKey(f"the key {twice!r} appears twice in one object")
    return out


def parse_json(data: bytes, where: str) -> Any:
    """The JSON value of ``data``; ``EdgesslError`` naming ``where`` and what is wrong with it."""
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_unique)
    except UnicodeDecodeError:
        reason = "not UTF-8 text"
    except DuplicateKey as exc:
        reason = str(exc)
    except json.JSONDecodeError as exc:
        reason = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        reason = str(exc).split(";")[0]
    except RecursionError:
        reason = "nested too deeply"
    raise EdgesslError(f"{where}: not valid JSON ({reason})")
