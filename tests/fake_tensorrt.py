"""A strict stand-in of the TensorRT Python API (10.x and 11.x) and of cuda-python's runtime, for tests.

TensorRT cannot be installed on the machines that run these tests (no wheel reaches them, and
``trt.Builder()`` needs a GPU), so the engine builder and the TensorRT backend would otherwise
never run. ``install(monkeypatch, version)`` puts this stand-in into ``sys.modules["tensorrt"]``
and ``cuda.bindings.runtime`` for one test only. It implements what edgessl uses, per version, from
the bindings' sources (pyCore.cpp/pyOnnx.cpp at release/10.3 and release/11.0-11.1, research notes
in docs/export.md) and nothing else, so a call a version does not have fails as it would there:

* 10.x and 11.x surfaces differ: ``BuilderFlag.FP16``/``INT8``/``BF16``/``FP8``/``INT4``, the
  precision-constraint flags, ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH``,
  ``IInt8EntropyCalibrator2``, ``CalibrationAlgoType``, ``config.int8_calibrator``,
  ``builder.platform_has_fast_fp16/int8`` and ``engine.device_memory_size`` exist on 10 only; the
  enum values differ (``STRONGLY_TYPED`` is 1 on 10, 0 on 11). Objects have ``__slots__``, so
  setting an attribute a version lacks raises, and ``set_flag`` takes only this version's flags.
* The parser refuses what onnx-tensorrt's ``QuantDequantLinearHelper`` refuses (a DequantizeLinear
  input other than INT8/FP8/INT4, a UINT8 or non-zero zero point) and ops of other domains.
* The builder records the network flags, builder flags, profiles, device type, DLA core and timing
  cache use into the engine, and fails (``None``, an error logged) as TensorRT does: a dynamic
  input without a profile, precision flags on a strongly typed network, a weakly typed Q/DQ
  network without ``INT8`` (TensorRT 10's "int8 is not configured in the builder"). On a DLA core
  it records whether the layers can run there (fixed shapes: min = opt = max; on 10 an FP16 or
  INT8 flag), else they fall back to the GPU (an error without ``GPU_FALLBACK``).
* An engine "file" is a JSON header (those settings, the TensorRT version and the GPU) and the ONNX
  it was parsed from; running it runs ONNX Runtime on that ONNX (on a weakly typed FP16 network of
  a float model: the model converted to fp16, inputs and outputs float32). A runtime of another
  version or GPU returns None, as TensorRT does.
* ``set_input_shape`` returns False outside the profile; ``execute_async_v3`` reads its input from
  and writes its outputs to the fake device memory, refusing an address or a size outside an
  allocation (``cudaMalloc``), so a short buffer or a -1 shape cannot pass unnoticed.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
from types import ModuleType, SimpleNamespace

import numpy as np

MAGIC = b"FAKE-TRT-ENGINE\n"
PRECISION_FLAGS = ("FP16", "BF16", "INT8", "FP8", "INT4", "FP4")


def engine_settings(data: bytes) -> dict:
    """The recorded build settings of a fake engine file's bytes."""
    header, _ = _split(data)
    return header


def engine_model(data: bytes) -> bytes:
    """The ONNX a fake engine file's bytes run."""
    _, model = _split(data)
    return model


def _split(data: bytes) -> tuple[dict, bytes]:
    if not data.startswith(MAGIC):
        raise ValueError("not a fake TensorRT engine")
    rest = data[len(MAGIC):]
    size = int.from_bytes(rest[:8], "little")
    return json.loads(rest[8:8 + size]), rest[8 + size:]


# --- cuda-python's runtime (cuda.bindings.runtime) ------------------------------------------------

class cudaError_t(enum.IntEnum):
    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100


class cudaMemcpyKind(enum.IntEnum):
    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3


class FakeCudart(ModuleType):
    """``cuda.bindings.runtime``: every call returns ``(cudaError_t, *values)`` like cuda-python."""

    cudaError_t = cudaError_t
    cudaMemcpyKind = cudaMemcpyKind

    def __init__(self, devices: int, compute_capability: str):
        super().__init__("cuda.bindings.runtime")
        self.devices, self.cc = devices, compute_capability
        self.allocations: dict[int, ctypes.Array] = {}
        self.streams: set[int] = set()

    def cudaGetDeviceCount(self):
        return cudaError_t.cudaSuccess, self.devices

    def cudaGetDeviceProperties(self, device: int):
        if not 0 <= device < self.devices:
            return cudaError_t.cudaErrorInvalidValue, None
        major, minor = (int(p) for p in self.cc.split("."))
        return cudaError_t.cudaSuccess, SimpleNamespace(major=major, minor=minor, name=b"Fake Orin")

    def cudaMalloc(self, size: int):
        buf = ctypes.create_string_buffer(int(size))
        self.allocations[ctypes.addressof(buf)] = buf
        return cudaError_t.cudaSuccess, ctypes.addressof(buf)

    def cudaFree(self, ptr: int):
        return (cudaError_t.cudaSuccess,) if self.allocations.pop(int(ptr), None) is not None \
            else (cudaError_t.cudaErrorInvalidValue,)

    def device_range(self, ptr: int, nbytes: int) -> bool:
        """[ptr, ptr + nbytes) lies inside one allocation."""
        return any(base <= ptr and ptr + nbytes <= base + len(buf) for base, buf in self.allocations.items())

    def cudaMemcpyAsync(self, dst: int, src: int, nbytes: int, kind, stream: int):
        if stream not in self.streams:
            return (cudaError_t.cudaErrorInvalidValue,)
        device = dst if kind == cudaMemcpyKind.cudaMemcpyHostToDevice else src
        if kind not in (cudaMemcpyKind.cudaMemcpyHostToDevice, cudaMemcpyKind.cudaMemcpyDeviceToHost) or \
                not self.device_range(int(device), int(nbytes)):
            return (cudaError_t.cudaErrorInvalidValue,)
        ctypes.memmove(int(dst), int(src), int(nbytes))
        return (cudaError_t.cudaSuccess,)

    def cudaStreamCreate(self):
        stream = len(self.streams) + 1
        self.streams.add(stream)
        return cudaError_t.cudaSuccess, stream

    def cudaStreamSynchronize(self, stream: int):
        return (cudaError_t.cudaSuccess,) if stream in self.streams else (cudaError_t.cudaErrorInvalidValue,)

    def cudaStreamDestroy(self, stream: int):
        self.streams.discard(stream)
        return (cudaError_t.cudaSuccess,)


# --- TensorRT ----------------------------------------------------------------------------------------

class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8
    INT4 = 9


NPTYPES = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
           DataType.BOOL: np.bool_, DataType.UINT8: np.uint8, DataType.INT64: np.int64}
ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32, 9: DataType.BOOL,
              2: DataType.UINT8, 7: DataType.INT64, 16: DataType.BF16}


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class DeviceType(enum.IntEnum):
    GPU = 0
    DLA = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3


def _enum(name: str, members: list[str]) -> type[enum.IntEnum]:
    return enum.IntEnum(name, {m: i for i, m in enumerate(members)})


BUILDER_FLAGS_10 = ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
                    "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
                    "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME", "FP8",
                    "ERROR_ON_TIMING_CACHE_MISS", "BF16", "DISABLE_COMPILATION_CACHE", "WEIGHTLESS", "STRIP_PLAN",
                    "REFIT_IDENTICAL", "WEIGHT_STREAMING", "INT4"]
BUILDER_FLAGS_11 = ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "EDITABLE_TIMING_CACHE", "TF32",
                    "SPARSE_WEIGHTS", "SAFETY_SCOPE", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE",
                    "EXCLUDE_LEAN_RUNTIME", "ERROR_ON_TIMING_CACHE_MISS", "DISABLE_COMPILATION_CACHE",
                    "STRIP_PLAN", "REFIT_IDENTICAL", "WEIGHT_STREAMING", "STRICT_NANS", "MONITOR_MEMORY",
                    "DISTRIBUTIVE_INDEPENDENCE"]
NETWORK_FLAGS_10 = ["EXPLICIT_BATCH", "STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS", "PREFER_AOT_PYTHON_PLUGINS"]
NETWORK_FLAGS_11 = ["STRONGLY_TYPED", "PREFER_JIT_PYTHON_PLUGINS", "PREFER_AOT_PYTHON_PLUGINS"]


class _DlaCore:
    """``DLA_core``, as IBuilderConfig and Runtime both have it (an int; -1: no DLA)."""

    __slots__ = ()

    @property
    def DLA_core(self):  # noqa: N802 - TensorRT's name
        return self._dla_core

    @DLA_core.setter
    def DLA_core(self, value):  # noqa: N802
        self._dla_core = int(value)


class _Log:
    """What TensorRT reported through its loggers (a test reads ``trt.messages``)."""

    def __init__(self):
        self.messages: list[tuple[int, str]] = []

    def error(self, text: str):
        self.messages.append((Severity.ERROR, text))


def make_tensorrt(version: str, dla_cores: int, compute_capability: str) -> ModuleType:
    """A ``tensorrt`` module of ``version`` (10.x or 11.x)."""
    major = int(version.split(".")[0])
    if major not in (10, 11):
        raise ValueError("the stand-in implements TensorRT 10 and 11")
    ten = major == 10
    BuilderFlag = _enum("BuilderFlag", BUILDER_FLAGS_10 if ten else BUILDER_FLAGS_11)
    NetworkFlag = _enum("NetworkDefinitionCreationFlag", NETWORK_FLAGS_10 if ten else NETWORK_FLAGS_11)
    log = _Log()
    trt = ModuleType("tensorrt")

    class Logger:
        __slots__ = ("min_severity",)
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (Severity(i) for i in range(5))
        Severity = Severity

        def __init__(self, min_severity=Severity.WARNING):
            self.min_severity = min_severity

    class ITensor:
        __slots__ = ("name", "shape", "dtype")

        def __init__(self, name, shape, dtype):
            self.name, self.shape, self.dtype = name, tuple(shape), dtype

    class INetworkDefinition:
        __slots__ = ("flags", "_inputs", "_outputs", "model", "has_qdq", "num_layers")

        def __init__(self, flags: int):
            self.flags, self._inputs, self._outputs, self.model, self.has_qdq, self.num_layers = flags, [], [], b"", \
                False, 0

        @property
        def num_inputs(self):
            return len(self._inputs)

        @property
        def num_outputs(self):
            return len(self._outputs)

        def get_input(self, i):
            return self._inputs[i]

        def get_output(self, i):
            return self._outputs[i]

        def strongly_typed(self) -> bool:
            return not ten or bool(self.flags >> int(NetworkFlag.STRONGLY_TYPED) & 1)

    class ParserError:
        __slots__ = ("_desc", "_node")

        def __init__(self, desc, node):
            self._desc, self._node = desc, node

        def desc(self):
            return self._desc

        def node(self):
            return self._node

        def code(self):
            return 8  # ErrorCode.UNSUPPORTED_NODE

    class OnnxParser:
        __slots__ = ("network", "logger", "_errors")

        def __init__(self, network, logger):
            if not isinstance(network, INetworkDefinition) or not isinstance(logger, Logger):
                raise TypeError("OnnxParser(network: INetworkDefinition, logger: ILogger)")
            self.network, self.logger, self._errors = network, logger, []

        @property
        def num_errors(self):
            return len(self._errors)

        def get_error(self, i):
            return self._errors[i]

        def clear_errors(self):
            self._errors.clear()

        def parse_from_file(self, path):
            with open(path, "rb") as f:
                return self.parse(f.read())

        def parse(self, model, path=None):
            import onnx

            proto = onnx.load_from_string(bytes(model))
            self._errors = [ParserError(d, n) for n, d in _parser_refusals(proto)]
            if self._errors:
                for e in self._errors:
                    log.error(f"[onnx parser] node {e.node()}: {e.desc()}")
                return False
            graph = proto.graph
            inits = {i.name for i in graph.initializer}
            self.network.model = bytes(model)
            self.network._inputs = [ITensor(v.name, _dims(v), _dtype(v)) for v in graph.input if v.name not in inits]
            self.network._outputs = [ITensor(v.name, _dims(v), _dtype(v)) for v in graph.output]
            self.network.has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.node)
            self.network.num_layers = len(graph.node)
            return True

    class IOptimizationProfile:
        __slots__ = ("shapes",)

        def __init__(self):
            self.shapes: dict[str, list[tuple[int, ...]]] = {}

        def set_shape(self, input, min, opt, max):  # noqa: A002 - TensorRT's parameter names
            shapes = [tuple(int(d) for d in s) for s in (min, opt, max)]
            if len({len(s) for s in shapes}) != 1 or any(d < 1 for s in shapes for d in s) or \
                    not all(a <= b <= c for a, b, c in zip(*shapes)):
                raise RuntimeError(f"Shape provided for min/opt/max is inconsistent for {input}: {shapes}")
            self.shapes[input] = shapes

        def get_shape(self, input):  # noqa: A002
            return self.shapes[input]

    class ITimingCache:
        __slots__ = ("entries",)

        def __init__(self, data: bytes):
            self.entries = int(data.decode() or 0) if data else 0

        def serialize(self):
            return str(self.entries).encode()

    class IBuilderConfig(_DlaCore):
        __slots__ = ("_flags", "pools", "profiles", "_device", "_dla_core", "timing_cache", *(
            ("_calibrator",) if ten else ()))

        def __init__(self):
            self._flags, self.pools, self.profiles, self._device, self._dla_core = set(), {}, [], DeviceType.GPU, -1
            self.timing_cache = None
            if ten:
                self._calibrator = None

        def set_memory_pool_limit(self, pool, size):
            if not isinstance(pool, MemoryPoolType):
                raise TypeError("set_memory_pool_limit(pool: MemoryPoolType, pool_size: int)")
            self.pools[pool.name] = int(size)

        def _check_flag(self, flag):
            if not isinstance(flag, BuilderFlag):
                raise TypeError(f"incompatible function arguments: expected tensorrt.BuilderFlag, got {flag!r}")

        def set_flag(self, flag):
            self._check_flag(flag)
            self._flags.add(flag.name)

        def clear_flag(self, flag):
            self._check_flag(flag)
            self._flags.discard(flag.name)

        def get_flag(self, flag):
            self._check_flag(flag)
            return flag.name in self._flags

        @property
        def default_device_type(self):
            return self._device

        @default_device_type.setter
        def default_device_type(self, value):
            if not isinstance(value, DeviceType):
                raise TypeError("default_device_type takes a tensorrt.DeviceType")
            self._device = value

        def add_optimization_profile(self, profile):
            if not profile.shapes:
                return -1
            self.profiles.append({k: [list(s) for s in v] for k, v in profile.shapes.items()})
            return len(self.profiles) - 1

        @property
        def num_optimization_profiles(self):
            return len(self.profiles)

        def create_timing_cache(self, serialized_timing_cache):
            return ITimingCache(bytes(serialized_timing_cache))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing_cache = cache
            return True

        def get_timing_cache(self):
            return self.timing_cache

        if ten:
            @property
            def int8_calibrator(self):
                return self._calibrator

            @int8_calibrator.setter
            def int8_calibrator(self, value):
                self._calibrator = value

    class HostMemory:
        __slots__ = ("data",)

        def __init__(self, data: bytes):
            self.data = data

        def __bytes__(self):
            return self.data

        @property
        def nbytes(self):
            return len(self.data)

    class Builder:
        __slots__ = ("logger",)

        def __init__(self, logger):
            if not isinstance(logger, Logger):
                raise TypeError("Builder(logger: ILogger)")
            self.logger = logger

        @property
        def num_DLA_cores(self):  # noqa: N802 - TensorRT's name
            return dla_cores

        if ten:
            @property
            def platform_has_fast_fp16(self):
                return True

            @property
            def platform_has_fast_int8(self):
                return True

        def create_network(self, flags=0):
            known = sum(1 << int(f) for f in NetworkFlag)
            if flags & ~known:
                raise ValueError(f"unknown NetworkDefinitionCreationFlag bits in {flags}")
            return INetworkDefinition(int(flags))

        def create_builder_config(self):
            return IBuilderConfig()

        def create_optimization_profile(self):
            return IOptimizationProfile()

        def build_serialized_network(self, network, config):
            problem, settings = _build(network, config)
            if problem:
                log.error(problem)
                return None
            if config.timing_cache is not None:
                config.timing_cache.entries += 1
            header = json.dumps(settings).encode()
            return HostMemory(MAGIC + len(header).to_bytes(8, "little") + header + _run_model(network, config))

    def _build(network, config) -> tuple[str | None, dict]:
        strong = network.strongly_typed()
        precision = sorted(set(config._flags) & set(PRECISION_FLAGS))
        if not network.model:
            return "the network is empty (nothing was parsed)", {}
        if strong and precision:
            return (f"builder flags {precision} cannot be set on a strongly typed network: "
                    "precisions come from the network's types"), {}
        if not strong and network.has_qdq and "INT8" not in config._flags:
            return ("Int8 precision has been set for a layer or layer output, but int8 is not configured in "
                    "the builder"), {}
        for t in network._inputs:
            shapes = [p.get(t.name) for p in config.profiles]
            if any(d < 0 for d in t.shape) and not any(shapes):
                return (f"Network has dynamic or shape inputs, but no optimization profile has been defined "
                        f"(input {t.name})"), {}
            for s in filter(None, shapes):
                if any(len(x) != len(t.shape) or any(d >= 0 and d != v for d, v in zip(t.shape, x)) for x in s):
                    return f"profile {s} does not fit input {t.name} {t.shape}", {}
        dla = config.default_device_type == DeviceType.DLA
        if dla and not 0 <= config.DLA_core < dla_cores:
            return f"DLA core {config.DLA_core} does not exist ({dla_cores} DLA cores)", {}
        fixed = all(s[0] == s[1] == s[2] for p in config.profiles for s in p.values())
        on_dla = dla and fixed and (strong if not ten else bool(precision))
        if dla and not on_dla and "GPU_FALLBACK" not in config._flags:
            return "DLA cannot run these layers (dynamic shapes or no FP16/INT8 mode) and GPU fallback is off", {}
        settings = {"tensorrt_version": version, "compute_capability": compute_capability,
                    "network_flags": [f.name for f in NetworkFlag if network.flags >> int(f) & 1],
                    "strongly_typed": strong, "builder_flags": sorted(config._flags), "profiles": config.profiles,
                    "device": "DLA" if dla else "GPU", "dla_core": config.DLA_core if dla else None,
                    "layers_on_dla": on_dla, "pools": config.pools, "timing_cache": config.timing_cache is not None,
                    "fp16_emulated": not strong and "FP16" in config._flags and not network.has_qdq,
                    "inputs": [[t.name, list(t.shape)] for t in network._inputs],
                    "outputs": [[t.name, list(t.shape)] for t in network._outputs]}
        return None, settings

    def _run_model(network, config) -> bytes:
        """The ONNX the engine runs: the parsed model, in fp16 for a weakly typed FP16 float network."""
        if not network.strongly_typed() and "FP16" in config._flags and not network.has_qdq:
            import onnx
            from onnxruntime.transformers.float16 import convert_float_to_float16

            return convert_float_to_float16(onnx.load_from_string(network.model), keep_io_types=True).SerializeToString()
        return network.model

    class IExecutionContext:
        __slots__ = ("engine", "shapes", "addresses", "_output_shapes")

        def __init__(self, engine):
            self.engine, self.shapes, self.addresses, self._output_shapes = engine, {}, {}, {}

        def set_input_shape(self, name, shape):
            shape = tuple(int(d) for d in shape)
            low, _, high = self.engine.profile(name) if name in self.engine.input_names else (None, None, None)
            if low is None or len(shape) != len(low) or not all(a <= d <= b for a, d, b in zip(low, shape, high)):
                log.error(f"IExecutionContext::setInputShape: Error Code 3: API Usage Error (shape {shape} of "
                          f"{name} is outside the optimization profile {low}..{high})")
                return False
            self.shapes[name] = shape
            return True

        def get_tensor_shape(self, name):
            if name in self.engine.input_names:
                return self.shapes.get(name, tuple(self.engine.shapes[name]))
            if not all(n in self.shapes for n in self.engine.input_names):
                return tuple(-1 if d < 0 else d for d in self.engine.shapes[name])
            key = tuple(self.shapes[n] for n in self.engine.input_names)
            if key not in self._output_shapes:
                feed = {n: np.zeros(self.shapes[n], np.float32) for n in self.engine.input_names}
                outs = self.engine.session().run(self.engine.output_names, feed)
                self._output_shapes[key] = {n: o.shape for n, o in zip(self.engine.output_names, outs)}
            return self._output_shapes[key][name]

        def set_tensor_address(self, name, memory):
            if name not in self.engine.shapes:
                return False
            self.addresses[name] = int(memory)
            return True

        def get_tensor_address(self, name):
            return self.addresses.get(name, 0)

        def execute_async_v3(self, stream_handle):
            cudart = sys.modules["cuda.bindings.runtime"]
            if stream_handle not in cudart.streams:
                log.error("execute_async_v3: invalid stream")
                return False
            if any(n not in self.shapes or n not in self.addresses for n in self.engine.input_names) or \
                    any(n not in self.addresses for n in self.engine.output_names):
                log.error("execute_async_v3: an input shape or a tensor address is not set")
                return False
            feed = {}
            for n in self.engine.input_names:
                nbytes = int(np.prod(self.shapes[n])) * 4
                if not cudart.device_range(self.addresses[n], nbytes):
                    log.error(f"execute_async_v3: input {n} is not in device memory")
                    return False
                feed[n] = np.frombuffer((ctypes.c_char * nbytes).from_address(self.addresses[n]),
                                        np.float32).reshape(self.shapes[n]).copy()
            for n, out in zip(self.engine.output_names, self.engine.session().run(self.engine.output_names, feed)):
                out = np.ascontiguousarray(out, np.float32)
                if tuple(out.shape) != tuple(self.get_tensor_shape(n)) or \
                        not cudart.device_range(self.addresses[n], out.nbytes):
                    log.error(f"execute_async_v3: output {n} {out.shape} does not fit its buffer")
                    return False
                ctypes.memmove(self.addresses[n], out.ctypes.data, out.nbytes)
            return True

    class ICudaEngine:
        __slots__ = ("settings", "model", "input_names", "output_names", "shapes", "_session", "dla_core_used")

        def __init__(self, settings: dict, model: bytes, dla_core_used: int):
            self.settings, self.model, self._session, self.dla_core_used = settings, model, None, dla_core_used
            self.input_names = [n for n, _ in settings["inputs"]]
            self.output_names = [n for n, _ in settings["outputs"]]
            self.shapes = {n: s for n, s in settings["inputs"] + settings["outputs"]}

        def session(self):
            if self._session is None:
                import onnxruntime as ort

                self._session = ort.InferenceSession(self.model, providers=["CPUExecutionProvider"])
            return self._session

        @property
        def num_io_tensors(self):
            return len(self.shapes)

        @property
        def num_optimization_profiles(self):
            return len(self.settings["profiles"])

        def get_tensor_name(self, index):
            return (self.input_names + self.output_names)[index]

        def get_tensor_mode(self, name):
            return TensorIOMode.INPUT if name in self.input_names else \
                TensorIOMode.OUTPUT if name in self.output_names else TensorIOMode.NONE

        def get_tensor_shape(self, name):
            return tuple(self.shapes[name])

        def get_tensor_dtype(self, name):
            return DataType.FLOAT

        def profile(self, name):
            return [tuple(s) for s in self.settings["profiles"][0][name]]

        def get_tensor_profile_shape(self, name, profile_index):
            if name not in self.input_names:
                raise RuntimeError(f"{name} is not an input tensor")
            return [tuple(s) for s in self.settings["profiles"][profile_index][name]]

        def create_execution_context(self, *args, **kwargs):
            return IExecutionContext(self)

        if ten:
            @property
            def device_memory_size(self):
                return 1 << 20
        else:
            @property
            def device_memory_size_v2(self):
                return 1 << 20

    class Runtime(_DlaCore):
        __slots__ = ("logger", "_dla_core")

        def __init__(self, logger):
            if not isinstance(logger, Logger):
                raise TypeError("Runtime(logger: ILogger)")
            self.logger, self._dla_core = logger, -1

        def deserialize_cuda_engine(self, serialized_engine):
            try:
                settings, model = _split(bytes(serialized_engine))
            except ValueError:
                log.error("Runtime::deserializeCudaEngine: the engine plan file is corrupted")
                return None
            if settings["tensorrt_version"] != version or settings["compute_capability"] != compute_capability:
                log.error("The engine plan file is not compatible with this version of TensorRT or this GPU")
                return None
            return ICudaEngine(settings, model, self._dla_core)

    def nptype(trt_type):
        return NPTYPES[trt_type]

    names = dict(__version__=version, Logger=Logger, Builder=Builder, Runtime=Runtime, OnnxParser=OnnxParser,
                 BuilderFlag=BuilderFlag, NetworkDefinitionCreationFlag=NetworkFlag, MemoryPoolType=MemoryPoolType,
                 DeviceType=DeviceType, TensorIOMode=TensorIOMode, DataType=DataType, nptype=nptype,
                 messages=log.messages)
    if ten:
        class IInt8EntropyCalibrator2:  # deprecated in 10.1, removed in 11
            pass

        names.update(IInt8EntropyCalibrator2=IInt8EntropyCalibrator2,
                     CalibrationAlgoType=_enum("CalibrationAlgoType", ["LEGACY_CALIBRATION", "ENTROPY_CALIBRATION",
                                                                       "ENTROPY_CALIBRATION_2", "MINMAX_CALIBRATION"]))
    trt.__dict__.update(names)
    return trt


def _dims(value_info) -> list[int]:
    return [d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim]


def _dtype(value_info):
    return ONNX_TYPES.get(value_info.type.tensor_type.elem_type, DataType.FLOAT)


def _parser_refusals(model) -> list[tuple[str, str]]:
    """(node, message) for what onnx-tensorrt's importer refuses among what edgessl could write."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    consts = {i.name: onnx.numpy_helper.to_array(i) for i in inferred.initializer}
    types.update({i.name: i.data_type for i in inferred.initializer})
    quantized = {onnx.TensorProto.INT8, onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4}
    out = []
    for node in inferred.node:
        if node.domain not in ("", "ai.onnx"):
            out.append((node.name, f"No importer registered for op: {node.op_type} (domain {node.domain})"))
            continue
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        if node.op_type == "DequantizeLinear" and types.get(node.input[0]) not in quantized:
            out.append((node.name, "TensorRT only allows FP8, INT8, and INT4 quantization"))
        zp = node.input[2] if len(node.input) > 2 else ""
        if zp and types.get(zp) == onnx.TensorProto.UINT8:
            out.append((node.name, "Found unsupported input type of UINT8"))
        elif zp in consts and np.any(consts[zp] != 0):
            out.append((node.name, "TensorRT only supports symmetric quantization. The zero point must be zero"))
    return out


def install(monkeypatch, version: str = "10.3.0.30", dla_cores: int = 2, compute_capability: str = "8.7",
            devices: int = 1) -> ModuleType:
    """Put the stand-in ``tensorrt`` and ``cuda.bindings.runtime`` into ``sys.modules`` for one test."""
    trt = make_tensorrt(version, dla_cores, compute_capability)
    cudart = FakeCudart(devices, compute_capability)
    cuda, bindings = ModuleType("cuda"), ModuleType("cuda.bindings")
    cuda.bindings, bindings.runtime = bindings, cudart
    for name, module in (("tensorrt", trt), ("cuda", cuda), ("cuda.bindings", bindings),
                         ("cuda.bindings.runtime", cudart)):
        monkeypatch.setitem(sys.modules, name, module)
    return trt
