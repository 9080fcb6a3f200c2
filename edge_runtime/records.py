"""Typed records from JSON read off disk (manifests, threshold files): a dataclass built from a dict
only when every key is one of its fields and every value has the field's type, else one
``EdgesslError`` naming the field, so a malformed file fails at load, not later inside numpy."""

from __future__ import annotations

import types
import typing
from dataclasses import fields
from typing import Any, TypeVar

from .errors import EdgesslError

T = TypeVar("T")


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(matches, value as the field holds it: JSON lists become tuples for tuple fields)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            ok, v = _coerce(value, option)
            if ok:
                return True, v
        return False, value
    if tp is type(None):
        return value is None, value
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp in (str, bool, dict, list):
        return isinstance(value, tp), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        item = typing.get_args(tp)[0]
        coerced = [_coerce(v, item) for v in value]
        return all(ok for ok, _ in coerced), tuple(v for _, v in coerced)
    return True, value  # a type this reader does not check (Any, nested records)


def record_from_dict(cls: type[T], d: Any, what: str) -> T:
    """``cls(**d)``, or ``EdgesslError`` naming ``what`` and the unknown, missing or mistyped field."""
    if not isinstance(d, dict):
        raise EdgesslError(f"{what}: expected a JSON object, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise EdgesslError(f"{what}: unknown field {unknown[0]!r}")
    values = {}
    for name, value in d.items():
        ok, values[name] = _coerce(value, hints[name])
        if not ok:
            tp = hints[name]
            raise EdgesslError(f"{what}: field {name!r} must be {getattr(tp, '__name__', tp)}, got {value!r:.40}")
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        raise EdgesslError(f"{what}: {str(exc).split('__init__() ')[-1]}") from None
