"""ONNX Runtime backend: CPU, CUDA and TensorRT execution providers.

The TensorRT provider takes ``fp16``/``int8`` (``int8``: a Q/DQ model, whose Q/DQ nodes need
TensorRT's INT8 mode and no calibration table), caches its engines and timing cache in
``engine_cache_dir`` (the pipeline gives the bundle's cache folder, so a restart reuses them) and
builds one explicit optimization profile, ``trt_profile`` (without one it rebuilds its engine for
every new input shape); a batch is split at the profile's maximum. The session refuses to start
when the requested provider silently falls back to another one, so ``backend.name`` is always what
runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import EdgesslError
from .base import in_chunks

PROVIDERS = {
    "ort-cpu": "CPUExecutionProvider",
    "ort-cuda": "CUDAExecutionProvider",
    "ort-tensorrt": "TensorrtExecutionProvider",
}
GRAPH_LEVELS = ("disable", "basic", "extended", "all")


@dataclass
class OrtOptions:
    """Session options. ``intra_op_threads`` 0 lets ONNX Runtime choose (one per core)."""

    intra_op_threads: int = 0
    graph_optimization: str = "all"
    fp16: bool = False
    int8: bool = False
    engine_cache_dir: str | None = None
    trt_profile: dict | None = None  # input name -> (min, opt, max) shapes, for the TensorRT provider
    device_id: int = 0
    # Worker threads spin after a run (a faster next run; but they steal the cores numpy needs right
    # after it). None: the pipeline decides from the detector (off for ``blas_bound`` ones), else on.
    spinning: bool | None = None


def available_providers() -> list[str]:
    try:
        import onnxruntime as ort
    except ImportError:
        return []
    return list(ort.get_available_providers())


def _provider_list(kind: str, opts: OrtOptions) -> list:
    cuda = ("CUDAExecutionProvider", {"device_id": opts.device_id})
    if kind == "ort-tensorrt":
        trt = {"device_id": opts.device_id, "trt_fp16_enable": opts.fp16, "trt_int8_enable": opts.int8}
        if opts.engine_cache_dir:
            Path(opts.engine_cache_dir).mkdir(parents=True, exist_ok=True)
            trt.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(opts.engine_cache_dir),
                       trt_timing_cache_enable=True, trt_timing_cache_path=str(opts.engine_cache_dir))
        if opts.trt_profile:
            trt.update({f"trt_profile_{which}_shapes": profile_shapes(opts.trt_profile, i)
                        for i, which in enumerate(("min", "opt", "max"))})
        return [("TensorrtExecutionProvider", trt), cuda, "CPUExecutionProvider"]
    if kind == "ort-cuda":
        return [cuda, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def profile_shapes(profile: dict, which: int) -> str:
    """The TensorRT provider's ``trt_profile_*_shapes`` string, ``name:1x3x224x224,...``, of
    ``profile``'s ``which`` (0 min, 1 opt, 2 max) shapes."""
    return ",".join(f"{name}:{'x'.join(str(d) for d in shapes[which])}" for name, shapes in profile.items())


def session_options(opts: OrtOptions):
    import onnxruntime as ort

    if opts.graph_optimization not in GRAPH_LEVELS:
        raise EdgesslError(f"graph optimisation level must be one of {GRAPH_LEVELS}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(opts.intra_op_threads)
    so.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[opts.graph_optimization]
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0" if opts.spinning is False else "1")
    return so


class OrtBackend:
    """One ONNX Runtime session on one model, from its bytes (``name``: what errors call it)."""

    def __init__(self, model: bytes, name: str, kind: str = "ort-cpu", options: OrtOptions | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EdgesslError("onnxruntime is not installed (pip install 'edgessl[runtime]')") from None
        if kind not in PROVIDERS:
            raise EdgesslError(f"unknown ONNX Runtime backend {kind!r}; use one of {list(PROVIDERS)}")
        if PROVIDERS[kind] not in ort.get_available_providers():
            raise EdgesslError(f"backend {kind} needs ONNX Runtime's {PROVIDERS[kind]}, which this install lacks "
                               f"(has: {', '.join(ort.get_available_providers())})")
        opts = options or OrtOptions()
        try:
            self.session = ort.InferenceSession(model, sess_options=session_options(opts),
                                                providers=_provider_list(kind, opts))
        except Exception as exc:  # onnxruntime raises its own exception types for bad models
            raise EdgesslError(f"{name}: ONNX Runtime cannot load it ({(str(exc).splitlines() or ['?'])[0]})") from None
        self.providers = list(self.session.get_providers())
        if self.providers[0] != PROVIDERS[kind]:
            raise EdgesslError(f"backend {kind}: ONNX Runtime fell back to {self.providers[0]} "
                               f"(is the GPU driver/CUDA/TensorRT installed?)")
        self.name = kind
        self.model_name = name
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        profile = (opts.trt_profile or {}).get(self.input_name) if kind == "ort-tensorrt" else None
        self.max_batch = profile[2][0] if profile else None  # None: any batch in one run

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        return in_chunks(self._run, np.ascontiguousarray(batch, np.float32), self.max_batch)

    def _run(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(zip(self.output_names, self.session.run(self.output_names, {self.input_name: x})))


def cpu_session(model: Path | bytes):
    """A bare ONNX Runtime CPU session of a model file (or its bytes): what export verification and
    calibration compare against."""
    import onnxruntime as ort

    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), providers=["CPUExecutionProvider"])


def run_batches(session, batch: np.ndarray, batch_size: int = 64) -> dict[str, np.ndarray]:
    """A session's named outputs for a ``N x C x H x W`` batch, run in chunks and concatenated."""
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    chunks = [session.run(names, {input_name: batch[i : i + batch_size]}) for i in range(0, len(batch), batch_size)]
    return {n: np.concatenate([c[j] for c in chunks]) for j, n in enumerate(names)}
