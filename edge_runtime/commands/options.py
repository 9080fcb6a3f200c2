"""Argparse glue every stage's ``commands.py`` shares."""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import TypeVar

T = TypeVar("T")


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The dataclass ``cls`` filled from the parsed options whose names are its fields."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names})
