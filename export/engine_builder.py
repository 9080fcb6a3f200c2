"""``edgessl build-engine``: a bundle's ONNX to a serialized TensorRT engine, for TensorRT 10 and 11.

* ``int8``: the Q/DQ model ``model.int8-tensorrt.onnx`` parsed as a strongly typed network
  (explicit quantization: precisions come from the Q/DQ nodes; TensorRT 11 accepts nothing else).
* ``best``: the Q/DQ model; on TensorRT 10 weakly typed with the FP16 and INT8 builder flags, so
  layers left in float may run in fp16; on TensorRT 11 (no such flags) as ``int8``.
* ``fp16``: ``model.onnx``; on TensorRT 10 with ``BuilderFlag.FP16``; on TensorRT 11 the model is
  first converted to fp16 (inputs/outputs kept float32) and parsed strongly typed.

One optimization profile over the dynamic batch (1, ``opt_batch``, ``max_batch``), a workspace pool
limit, an optional timing cache (read, then written back), and DLA with GPU fallback for Jetson.
The engine is written to ``engines/<key>.engine`` and recorded in ``manifest["engines"]``
(``edge_runtime.engines``), through ``update_bundle`` (verified, re-sealed, swapped in at once).
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.files import write_atomic
from edgessl.edge_runtime.bundle_update import update_bundle
from edgessl.edge_runtime.engines import ENGINE_DIR, engine_key, gpu_compute_capability, upsert_engine, version_triple
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.gpu_packages import import_tensorrt
from edgessl.edge_runtime.timestamps import utc_now

from .config import EngineConfig


def source_key(precision: str) -> str:
    """The bundle precision whose ONNX an engine of ``precision`` is built from."""
    if precision == "fp16":
        return "fp32"
    if precision in ("int8", "best"):
        return "int8-tensorrt"
    raise EdgesslError(f"unknown engine precision {precision!r}; use fp16, int8 or best")


def check_config(cfg: EngineConfig) -> None:
    if not 1 <= cfg.opt_batch <= cfg.max_batch:
        raise EdgesslError(f"need 1 <= --opt-batch ({cfg.opt_batch}) <= --max-batch ({cfg.max_batch})")
    if cfg.workspace_mb < 16:
        raise EdgesslError(f"--workspace-mb {cfg.workspace_mb} is too small (at least 16)")
    if cfg.dla_core is not None and cfg.dla_core < 0:
        raise EdgesslError("--dla-core must be 0 or more")


def _fp16_onnx(data: bytes) -> bytes:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    return convert_float_to_float16(onnx.load_from_string(data), keep_io_types=True).SerializeToString()


def _network(trt, builder, logger, data: bytes, strongly_typed: bool):
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(1 << int(flag) if strongly_typed and flag is not None else 0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise EdgesslError(f"TensorRT cannot parse the model: {errors}")
    return network, parser


def _config(trt, builder, cfg: EngineConfig, network, input_shape: tuple[int, ...], strongly_typed: bool):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    if not strongly_typed:  # TensorRT 10's weakly typed networks: the precision flags still exist there
        config.set_flag(trt.BuilderFlag.FP16)
        if cfg.precision == "best":
            config.set_flag(trt.BuilderFlag.INT8)
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    profile.set_shape(name, (1, *input_shape), (cfg.opt_batch, *input_shape), (cfg.max_batch, *input_shape))
    config.add_optimization_profile(profile)
    if cfg.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise EdgesslError("this device has no DLA cores; drop --dla-core")
        if cfg.dla_core >= builder.num_DLA_cores:
            raise EdgesslError(f"--dla-core {cfg.dla_core}: this device has {builder.num_DLA_cores} DLA cores")
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = cfg.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    return config


def _timing_cache(config, path: Path | None):
    if path is None:
        return None
    cache = config.create_timing_cache(path.read_bytes() if path.is_file() else b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def build_engine(cfg: EngineConfig) -> dict:
    """Build, store and record the engine; returns its manifest record."""
    check_config(cfg)
    bundle = Bundle.load(cfg.bundle)
    src = source_key(cfg.precision)
    model_path = bundle.model_file(src)  # refuses, naming `edgessl calibrate`, when the Q/DQ model is missing
    trt = import_tensorrt()
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise EdgesslError(f"TensorRT {trt.__version__} is too old: edgessl builds with TensorRT 10 or 11")
    strongly_typed = major >= 11 or cfg.precision == "int8"
    data = model_path.read_bytes()
    if cfg.precision == "fp16" and strongly_typed:
        data = _fp16_onnx(data)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, logger, data, strongly_typed)
    input_shape = tuple(int(d) for d in bundle.manifest["model"]["input"]["shape"][1:])
    config = _config(trt, builder, cfg, network, input_shape, strongly_typed)
    cache_path = Path(cfg.timing_cache) if cfg.timing_cache else None
    cache = _timing_cache(config, cache_path)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgesslError("TensorRT failed to build the engine (see its messages above)")
    if cache is not None:
        write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))

    rel_model = bundle.manifest["precisions"][src]["model"]
    source_sha = bundle.manifest["files"][rel_model]
    cc = gpu_compute_capability()
    key = engine_key(trt.__version__, cc, cfg.precision, source_sha, cfg.dla_core)
    rel = f"{ENGINE_DIR}/{key}.engine"
    engine = bytes(serialized)
    entry = {
        "key": key, "file": rel, "tensorrt_version": version_triple(trt.__version__),
        "tensorrt_version_full": trt.__version__, "compute_capability": cc, "precision": cfg.precision,
        "source": src, "source_model": rel_model, "source_sha256": source_sha,
        "strongly_typed": strongly_typed, "dla_core": cfg.dla_core, "min_batch": 1, "opt_batch": cfg.opt_batch,
        "max_batch": cfg.max_batch, "workspace_mb": cfg.workspace_mb,
        "build_seconds": round(time.perf_counter() - started, 1), "engine_sha256": hashlib.sha256(engine).hexdigest(),
        "created": utc_now(),
    }

    def store(root: Path, manifest: dict) -> dict:
        write_atomic(root / rel, engine)
        return upsert_engine(manifest, entry)

    update_bundle(bundle.root, store, based_on=bundle.hash)
    return entry
