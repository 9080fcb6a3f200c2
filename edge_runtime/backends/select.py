"""Choosing a backend by name, or ``auto``: the best one this machine can run the bundle on."""

from __future__ import annotations

from typing import Callable

from .base import BACKEND_NAMES, CHOICES
from .ort import PROVIDERS, available_providers
from .tensorrt_native import tensorrt_unavailable
from ..errors import EdgesslError


def available_backends() -> list[str]:
    """The backends that can run here, best first."""
    providers = set(available_providers())
    have = [name for name, prov in PROVIDERS.items() if prov in providers]
    if tensorrt_unavailable() is None:
        have.append("tensorrt")
    return [name for name in BACKEND_NAMES if name in have]


def select_backend(name: str = "auto", has_engine: Callable[[], bool] = lambda: False) -> str:
    """``name`` checked against what is available, or for ``auto`` the best available one.

    Best first: native TensorRT (only when ``has_engine()``: the bundle holds a valid engine for
    this device, else it could not load), ONNX Runtime with TensorRT, with CUDA, on the CPU.
    """
    if name not in CHOICES:
        raise EdgesslError(f"unknown backend {name!r}; choose one of {', '.join(CHOICES)}")
    have = available_backends()
    if name == "auto":
        usable = [b for b in have if b != "tensorrt" or has_engine()]
        if not usable:
            raise EdgesslError("no inference backend is installed (pip install 'edgessl[runtime]')")
        return usable[0]
    if name not in have:
        why = f" ({tensorrt_unavailable()})" if name == "tensorrt" else ""
        raise EdgesslError(f"backend {name} is not available on this machine{why} "
                           f"(available: {', '.join(have) or 'none'})")
    return name
