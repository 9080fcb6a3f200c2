"""``edgessl build-engine``: a bundle's ONNX to a serialized TensorRT engine, for TensorRT 10 and 11.

Before anything is built, the source model passes the TensorRT preflight for the installed
TensorRT line (``tensorrt_preflight``) with the profile below. Then, by precision:

* ``int8``: the Q/DQ model ``model.int8-tensorrt.onnx`` parsed as a strongly typed network
  (explicit quantization: precisions come from the Q/DQ nodes; no precision flag may be set).
* ``best``: the Q/DQ model; on TensorRT 10 weakly typed with the FP16 and INT8 builder flags, so
  layers left in float may run in fp16; on TensorRT 11 (no such flags) as ``int8``.
* ``fp16``: ``model.onnx``; on TensorRT 10 weakly typed with ``BuilderFlag.FP16``; on TensorRT 11
  the model is first converted to fp16 (inputs/outputs kept float32) and parsed strongly typed.
* On a DLA core (``--dla-core``, TensorRT 10 on JetPack 6): weakly typed with FP16 (and INT8 for
  the Q/DQ model), since DLA runs only in those modes; GPU fallback on. TensorRT 11 builds strongly
  typed there too (11.4.1+ on AGX Orin; 11.0-11.3 and Thor have no DLA core, refused).

One optimization profile over the batch (``config.engine_batches``: 1 to ``--max-batch`` on a GPU;
on a DLA core, which takes no dynamic dimension, ``--opt-batch`` fixed), a workspace pool limit,
an optional timing cache (read, then written back). The engine is then checked against ONNX
Runtime and (with a detector) given its own threshold (``engine_check``; a classifier head is
checked by its accuracy), written to ``engines/<key>.engine`` and
recorded in the bundle's engines delta through ``bundle_update.add_engine``: the sealed (and
signed) base bundle is not changed.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from edgessl.edge_runtime.bundle import ENGINES_DIR, Bundle
from edgessl.edge_runtime.bundle_update import add_engine
from edgessl.edge_runtime.engines import engine_key, engine_profile, gpu_compute_capability, version_triple
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.files import write_atomic
from edgessl.edge_runtime.gpu_packages import import_tensorrt
from edgessl.edge_runtime.outputs import output_file, refuse_overlap
from edgessl.edge_runtime.timestamps import utc_now

from .config import EngineConfig, engine_batches
from .engine_check import check_engine_outputs
from .tensorrt_preflight import preflight, ruleset_for

FP16_HINT = ("building an fp16 engine on TensorRT 11 converts model.onnx to fp16 with the onnx package: "
             "pip install 'edgessl[gpu]' (or onnx)")


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


def precision_flags(precision: str, major: int, dla: bool) -> tuple[bool, tuple[str, ...]]:
    """Whether the network is strongly typed, and the ``BuilderFlag`` names to set (module docstring)."""
    if major >= 11:
        return True, ()
    if dla:
        return False, ("FP16",) if precision == "fp16" else ("FP16", "INT8")
    return {"int8": (True, ()), "best": (False, ("FP16", "INT8")), "fp16": (False, ("FP16",))}[precision]


def _fp16_onnx(data: bytes) -> bytes:
    try:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16
    except ImportError:
        raise EdgesslError(FP16_HINT) from None
    return convert_float_to_float16(onnx.load_from_string(data), keep_io_types=True).SerializeToString()


def _network(trt, builder, logger, data: bytes, strongly_typed: bool, major: int):
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if strongly_typed and major < 11 else 0
    network = builder.create_network(flags)  # TensorRT 11: always strongly typed (its flag is ignored)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise EdgesslError(f"TensorRT cannot parse the model: {errors}")
    return network, parser


def _config(trt, builder, cfg: EngineConfig, network, profile: dict, flags: tuple[str, ...]):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, cfg.workspace_mb << 20)
    for flag in flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    opt_profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    if name not in profile:
        raise EdgesslError(f"the model's input is {name!r} but the manifest records {', '.join(profile)}; re-export")
    opt_profile.set_shape(name, *profile[name])
    if config.add_optimization_profile(opt_profile) < 0:
        raise EdgesslError(f"TensorRT refused the optimization profile {profile[name]}")
    if cfg.dla_core is not None:
        if builder.num_DLA_cores == 0:
            raise EdgesslError("this device has no DLA cores (TensorRT 11.0-11.3 and Jetson Thor have none); "
                               "drop --dla-core")
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
    """Preflight, build, check, store and record the engine; returns its record."""
    check_config(cfg)
    if cfg.timing_cache:  # read and rewritten: never a file of the sealed bundle
        output_file(refuse_overlap(cfg.timing_cache, "--timing-cache", sealed=[cfg.bundle]), "--timing-cache",
                    updated=True)
    bundle = Bundle.load(cfg.bundle)
    src = source_key(cfg.precision)
    data = bundle.model_bytes(src)  # refuses, naming `edgessl calibrate`, when the Q/DQ model is missing
    batches = engine_batches(cfg)
    profile = engine_profile(bundle.manifest, batches)
    trt = import_tensorrt()
    rules = ruleset_for(trt.__version__)
    preflight(data, (rules.name,), profile, bundle.model_name(src))
    major = int(rules.name)
    strongly_typed, flags = precision_flags(cfg.precision, major, cfg.dla_core is not None)
    if cfg.precision == "fp16" and strongly_typed:
        data = _fp16_onnx(data)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network, _parser = _network(trt, builder, logger, data, strongly_typed, major)
    config = _config(trt, builder, cfg, network, profile, flags)
    cache_path = Path(cfg.timing_cache) if cfg.timing_cache else None
    cache = _timing_cache(config, cache_path)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EdgesslError("TensorRT failed to build the engine (see its messages above)")
    build_seconds = time.perf_counter() - started
    engine = bytes(serialized)
    comparison, threshold = check_engine_outputs(bundle, engine, src, cfg.dla_core, cfg.data, cfg.holdout_images,
                                                 cfg.min_cosine, cfg.max_accuracy_drop)
    if cache is not None:
        write_atomic(cache_path, bytes(config.get_timing_cache().serialize()))

    rel_model = bundle.manifest["precisions"][src]["model"]
    source_sha = bundle.manifest["files"][rel_model]
    cc = gpu_compute_capability()
    key = engine_key(trt.__version__, cc, cfg.precision, source_sha, cfg.dla_core)
    entry = {
        "key": key, "file": f"{ENGINES_DIR}/{key}.engine", "tensorrt_version": version_triple(trt.__version__),
        "tensorrt_version_full": trt.__version__, "compute_capability": cc, "precision": cfg.precision,
        "source": src, "source_model": rel_model, "source_sha256": source_sha,
        "strongly_typed": strongly_typed, "builder_flags": list(flags), "dla_core": cfg.dla_core,
        "min_batch": batches[0], "opt_batch": batches[1], "max_batch": batches[2], "workspace_mb": cfg.workspace_mb,
        "preflight": {"passed": True, "tensorrt": rules.label},
        "comparison": comparison, "threshold": None if threshold is None else threshold.to_dict(),
        "threshold_from": None if threshold is None else f"{threshold.n_holdout} held-out normal scores of this engine",
        "build_seconds": round(build_seconds, 1), "engine_sha256": hashlib.sha256(engine).hexdigest(),
        "created": utc_now(),
    }
    add_engine(bundle.root, entry, engine, based_on=bundle.hash)
    return entry
