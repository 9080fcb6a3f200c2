"""The pretext tasks, by name."""

from __future__ import annotations

from .base import PretextMethod
from .rotation import RotationPrediction
from .simclr import SimCLR

METHODS: dict[str, type[PretextMethod]] = {m.name: m for m in (RotationPrediction, SimCLR)}
