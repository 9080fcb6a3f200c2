"""Choosing a backend by name, or ``auto``: the best one this machine can run."""

from __future__ import annotations

from .base import BACKEND_NAMES, CHOICES
from .ort import PROVIDERS, available_providers
from .tensorrt_native import tensorrt_available
from ..errors import EdgesslError


def available_backends() -> list[str]:
    """The backends that can run here, best first."""
    providers = set(available_providers())
    have = [name for name, prov in PROVIDERS.items() if prov in providers]
    if tensorrt_available():
        have.append("tensorrt")
    return [name for name in BACKEND_NAMES if name in have]


def select_backend(name: str = "auto") -> str:
    """``name`` checked against what is available, or for ``auto`` the best available one.

    Best first: native TensorRT, ONNX Runtime with TensorRT, with CUDA, on the CPU.
    """
    if name not in CHOICES:
        raise EdgesslError(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    have = available_backends()
    if not have:
        raise EdgesslError("no inference backend is installed (pip install 'edgessl[runtime]')")
    if name == "auto":
        return have[0]
    if name not in have:
        raise EdgesslError(f"backend {name} is not available on this machine (available: {', '.join(have)})")
    return name
