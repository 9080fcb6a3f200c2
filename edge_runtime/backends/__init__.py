"""Inference backends: ONNX Runtime (CPU, CUDA, TensorRT providers) and native TensorRT.

``select_backend(name)`` resolves ``auto`` to the best available one; ``available_backends()``
lists what runs here, best first.
"""

from .base import BACKEND_NAMES, Backend
from .select import CHOICES, available_backends, select_backend

__all__ = ["BACKEND_NAMES", "Backend", "CHOICES", "available_backends", "select_backend"]
