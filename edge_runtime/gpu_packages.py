"""The optional GPU packages (TensorRT, the CUDA runtime bindings), imported only when asked for,
with a one-line ``EdgesslError`` saying what to install when they are missing."""

from __future__ import annotations

from .errors import EdgesslError

TENSORRT_HINT = ("TensorRT is not installed: on a Jetson use JetPack's python3-libnvinfer; on an x86 GPU machine "
                 "`pip install tensorrt` (TensorRT 10 or 11)")


def import_cudart():
    """The CUDA runtime bindings module (``cuda.bindings.runtime``; ``cuda.cudart`` before cuda-python 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise EdgesslError("the CUDA Python bindings are not installed (pip install cuda-python)") from None
    return cudart


def import_tensorrt():
    """``tensorrt``."""
    try:
        import tensorrt
    except ImportError:
        raise EdgesslError(TENSORRT_HINT) from None
    return tensorrt
