"""The pretext tasks, by name."""

from __future__ import annotations

from .base import PretextMethod
from .byol import BYOL
from .cutpaste import CutPaste
from .gan import GAN
from .jigsaw import Jigsaw
from .moco import MoCo
from .perlin import PerlinPaste
from .rotation import RotationPrediction
from .simclr import SimCLR

METHODS: dict[str, type[PretextMethod]] = {
    m.name: m for m in (RotationPrediction, Jigsaw, SimCLR, BYOL, MoCo, GAN, CutPaste, PerlinPaste)}
