"""Native TensorRT backend: a serialized engine (from ``edgessl build-engine``) run with CUDA buffers.

``tensorrt`` and the CUDA Python bindings (``cuda.bindings.runtime``, or ``cuda.cudart`` in older
cuda-python) are imported only here, only when the backend is built. ``engine_for`` picks the
bundle's engine for this device (TensorRT version, GPU compute capability, DLA core) and refuses a
stale or foreign one (``engines.select_engine``).

An engine takes batches its optimization profile allows (1 to its maximum on a GPU; exactly its
fixed batch on a DLA core), so ``run`` splits a batch into chunks of at most the maximum and pads a
chunk below the minimum with zeros (their outputs dropped). Per chunk: host input -> device
(async copy), ``set_input_shape`` (its refusal is an error, never a -1 output shape),
``execute_async_v3`` on one stream, device -> host outputs, one synchronise. Buffers are
(re)allocated only when a chunk needs more room.
"""

from __future__ import annotations


import numpy as np

from .base import in_chunks
from ..bundle import Bundle
from ..engines import gpu_compute_capability, select_engine
from ..errors import EdgesslError
from ..gpu_packages import import_cudart, import_tensorrt

# Engine precisions (``edgessl build-engine``) usable for a bundle precision key, preferred first.
ENGINE_PRECISIONS = {"fp32": ("fp16",), "int8-tensorrt": ("int8", "best")}


def tensorrt_unavailable() -> str | None:
    """Why the native TensorRT backend cannot run here (TensorRT, the CUDA bindings, a GPU), or None."""
    try:
        import_tensorrt()
        err, count = import_cudart().cudaGetDeviceCount()
    except EdgesslError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a broken install (e.g. cuda-python built for a newer driver)
        return f"the CUDA bindings failed ({type(exc).__name__}: {exc})"
    if int(err) != 0:
        return f"CUDA reports no usable GPU (error {int(err)}; is cuda-python's CUDA major the driver's?)"
    return None if count > 0 else "no NVIDIA GPU found"


def tensorrt_available() -> bool:
    """TensorRT, the CUDA bindings and at least one GPU are present."""
    return tensorrt_unavailable() is None


def engine_for(bundle: Bundle, key: str, dla_core: int | None = None) -> dict:
    """The record of the bundle's engine for precision ``key`` on this device (TensorRT version, GPU,
    DLA core), checked for staleness by ``engines.select_engine``: ``fp32`` runs the fp16 engine
    built from the fp32 model, ``int8-tensorrt`` the int8 (or ``best``) engine built from the Q/DQ model."""
    trt = import_tensorrt()
    if key not in ENGINE_PRECISIONS:
        raise EdgesslError(f"no TensorRT engine kind for precision {key}")
    cc = gpu_compute_capability()
    files = bundle.manifest["files"]
    error: EdgesslError | None = None
    for precision in ENGINE_PRECISIONS[key]:
        try:
            return select_engine(bundle.engines, files, trt.__version__, cc, precision, dla_core)
        except EdgesslError as exc:
            error = error or exc
    raise error


def engine_ready(bundle: Bundle, key: str, dla_core: int | None = None) -> bool:
    """A valid engine for precision ``key`` exists for this device (what ``--backend auto`` asks)."""
    try:
        engine_for(bundle, key, dla_core)
    except EdgesslError:
        return False
    return True


def _check(result):
    """Unpack a cuda-python ``(err, *values)`` tuple, raising on a CUDA error."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise EdgesslError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class TensorRTBackend:
    """Run a deserialized TensorRT engine (TensorRT 10/11 named-tensor API)."""

    name = "tensorrt"

    def __init__(self, engine: bytes, name: str, dla_core: int | None = None):
        """Deserialize ``engine`` (its bytes; ``name``: what errors call it)."""
        trt = import_tensorrt()
        self.cudart = import_cudart()
        self.trt = trt
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        if dla_core is not None:
            self.runtime.DLA_core = dla_core
        self.engine = self.runtime.deserialize_cuda_engine(engine)
        if self.engine is None:
            raise EdgesslError(f"{name}: TensorRT {trt.__version__} cannot deserialize this engine "
                               "(built by another TensorRT version or for another GPU?); rebuild it with `edgessl build-engine`")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = [self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names]
        self.input_name = next(n for n, i in zip(names, is_input) if i)
        self.output_names = [n for n, i in zip(names, is_input) if not i]
        low, _, high = self.engine.get_tensor_profile_shape(self.input_name, 0)
        self.min_batch, self.max_batch = int(low[0]), int(high[0])
        self.providers = [f"TensorRT {trt.__version__}" + ("" if dla_core is None else f" DLA core {dla_core}")]
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
        return in_chunks(self._run_chunk, np.ascontiguousarray(batch, np.float32), self.max_batch)

    def _run_chunk(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """One chunk of at most ``max_batch`` images, padded with zeros up to ``min_batch``."""
        n = len(x)
        if n < self.min_batch:
            x = np.concatenate([x, np.zeros((self.min_batch - n, *x.shape[1:]), np.float32)])
        cudart = self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        if not self.context.set_input_shape(self.input_name, x.shape):
            raise EdgesslError(f"TensorRT refused input shape {x.shape} (the engine's profile takes batches "
                               f"{self.min_batch}-{self.max_batch} of {tuple(self.engine.get_tensor_shape(self.input_name))[1:]})")
        ptr = self._device_buffer(self.input_name, x.nbytes)
        _check(cudart.cudaMemcpyAsync(ptr, x.ctypes.data, x.nbytes, h2d, self.stream))
        self.context.set_tensor_address(self.input_name, ptr)
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EdgesslError(f"TensorRT left output {name} without a shape ({shape}) for input {x.shape}")
            outputs[name] = np.empty(shape, np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name))))
            self.context.set_tensor_address(name, self._device_buffer(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise EdgesslError("TensorRT failed to execute the engine")
        for name, out in outputs.items():
            _check(cudart.cudaMemcpyAsync(out.ctypes.data, self._buffers[name][0], out.nbytes, d2h, self.stream))
        _check(cudart.cudaStreamSynchronize(self.stream))
        return {k: v[:n].astype(np.float32, copy=False) for k, v in outputs.items()}

    def __del__(self):
        for ptr, _ in getattr(self, "_buffers", {}).values():
            self.cudart.cudaFree(ptr)
        if getattr(self, "stream", None) is not None:
            self.cudart.cudaStreamDestroy(self.stream)
