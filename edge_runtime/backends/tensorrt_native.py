"""Native TensorRT backend: a serialized engine (from ``edgessl build-engine``) run with CUDA buffers.

``tensorrt`` and the CUDA Python bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` in older
cuda-python) are imported only here, only when the backend is built. The engine's staleness
(TensorRT version, GPU compute capability) is checked by the caller before it gets here.

Per batch: host input -> device (async copy), ``execute_async_v3`` on one stream, device -> host
outputs, one synchronise. Buffers are (re)allocated only when the batch grows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import Bundle
from ..engines import gpu_compute_capability, select_engine
from ..errors import EdgesslError
from ..gpu_packages import import_cudart, import_tensorrt

# Engine precisions (``edgessl build-engine``) usable for a bundle precision key, preferred first.
ENGINE_PRECISIONS = {"fp32": ("fp16",), "int8-tensorrt": ("int8", "best")}


def tensorrt_available() -> bool:
    """TensorRT, the CUDA bindings and at least one GPU are present."""
    try:
        import_tensorrt()
        cudart = import_cudart()
        err, count = cudart.cudaGetDeviceCount()
    except Exception:  # any failure here only means "not available"
        return False
    return int(err) == 0 and count > 0


def engine_for(bundle: Bundle, key: str) -> Path:
    """The bundle's engine for precision ``key`` on this device (TensorRT version, GPU), checked for
    staleness by ``engines.select_engine``: ``fp32`` runs the fp16 engine built from the fp32 model,
    ``int8-tensorrt`` the int8 (or ``best``) engine built from the Q/DQ model."""
    trt = import_tensorrt()
    if key not in ENGINE_PRECISIONS:
        raise EdgesslError(f"no TensorRT engine kind for precision {key}")
    cc = gpu_compute_capability()
    error: EdgesslError | None = None
    for precision in ENGINE_PRECISIONS[key]:
        try:
            return bundle.path(select_engine(bundle.manifest, trt.__version__, cc, precision)["file"])
        except EdgesslError as exc:
            error = error or exc
    raise error


def _check(result):
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EdgesslError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class TensorRTBackend:
    """Run a deserialized TensorRT engine (TensorRT 10/11 named-tensor API)."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path):
        trt = import_tensorrt()
        self.cudart = import_cudart()
        self.trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise EdgesslError(f"{engine_path}: TensorRT {trt.__version__} cannot deserialize this engine "
                               "(built by another TensorRT version or for another GPU?); rebuild it with `edgessl build-engine`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_name = next(n for n, i in zip(names, is_input) if i)
        self.output_names = [n for n, i in zip(names, is_input) if not i]
        self.providers = [f"TensorRT {trt.__version__}"]
        self.stream = _check(self.cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _check(self.cudart.cudaFree(ptr))
            ptr = _check(self.cudart.cudaMalloc(nbytes))
            self._buffers[name] = (ptr, nbytes)
        return ptr

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        cudart, H2D, D2H = self.cudart, self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, \
            self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        x = np.ascontiguousarray(batch, np.float32)
        self.context.set_input_shape(self.input_name, x.shape)
        ptr = self._device_buffer(self.input_name, x.nbytes)
        _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, H2D, self.stream))
        self.context.set_tensor_address(self.input_name, ptr)
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))
            outputs[name] = np.empty(shape, dtype)
            self.context.set_tensor_address(name, self._device_buffer(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise EdgesslError("TensorRT failed to execute the engine")
        for name, out in outputs.items():
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, D2H, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return {k: v.astype(np.float32, copy=False) for k, v in outputs.items()}

    def __del__(self):
        for ptr, _ in getattr(self, "_buffers", {}).values():
            self.cudart.cudaFree(ptr)
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
