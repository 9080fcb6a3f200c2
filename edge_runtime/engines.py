"""TensorRT engines recorded in a bundle, and the refusal of a stale or foreign one. Torch-free.

A serialized TensorRT engine only runs on the TensorRT version and the GPU architecture (compute
capability) that built it, and only means what the bundle says while its source ONNX model is the
one in the bundle. ``edgessl build-engine`` appends a record per engine to ``manifest["engines"]``::

    {"key": "trt10.3.0-sm87-int8-1a2b3c4d5e6f", "file": "engines/<key>.engine",
     "tensorrt_version": "10.3.0", "compute_capability": "8.7", "precision": "int8",
     "source": "int8-tensorrt", "source_model": "model.int8-tensorrt.onnx", "source_sha256": "...",
     "strongly_typed": true, "dla_core": null, "min_batch": 1, "opt_batch": 1, "max_batch": 16,
     "workspace_mb": 1024, "device_name": "Orin", "created": "..."}

The runtime's TensorRT backend calls ``select_engine`` (or ``check_engine`` on a record it chose):
an engine of another TensorRT version, another GPU, or an older source model is refused with a
message saying how to rebuild it.
"""

from __future__ import annotations

import shutil
import subprocess

from .errors import EdgesslError

ENGINE_DIR = "engines"
ENGINE_PRECISIONS = ("fp16", "int8", "best")


def version_triple(version: str) -> str:
    """``major.minor.patch`` of a TensorRT version string (``10.3.0.30`` -> ``10.3.0``)."""
    parts = str(version).split(".")
    if not parts[0].isdigit():
        raise EdgesslError(f"not a TensorRT version: {version!r}")
    return ".".join((parts + ["0", "0"])[:3])


def engine_key(tensorrt_version: str, compute_capability: str, precision: str, source_sha256: str,
               dla_core: int | None = None) -> str:
    """The name an engine is stored and looked up under: what it was built with, and from what."""
    cc = str(compute_capability).replace(".", "")
    key = f"trt{version_triple(tensorrt_version)}-sm{cc}-{precision}-{source_sha256[:12]}"
    return key if dla_core is None else f"{key}-dla{dla_core}"


def check_engine(entry: dict, tensorrt_version: str, compute_capability: str,
                 source_sha256: str | None = None) -> None:
    """Refuse (``EdgesslError``) an engine record that cannot run here or is stale.

    ``tensorrt_version`` and ``compute_capability`` describe this device; ``source_sha256`` is
    the current sha256 of the engine's source model in the bundle (from ``manifest["files"]``).
    """
    name = entry.get("file", entry.get("key", "engine"))
    rebuild = "rebuild it on this device with `edgessl build-engine`"
    built_v, here_v = version_triple(entry.get("tensorrt_version", "0")), version_triple(tensorrt_version)
    if built_v != here_v:
        raise EdgesslError(f"{name} was built with TensorRT {built_v}; this device has TensorRT {here_v} "
                           f"(engines do not transfer between TensorRT versions): {rebuild}")
    built_cc, here_cc = str(entry.get("compute_capability")), str(compute_capability)
    if built_cc != here_cc:
        raise EdgesslError(f"{name} was built for a GPU of compute capability {built_cc}; this GPU is "
                           f"{here_cc} (engines do not transfer between GPU architectures): {rebuild}")
    if source_sha256 is not None and entry.get("source_sha256") != source_sha256:
        raise EdgesslError(f"{name} is stale: it was built from an older {entry.get('source_model', 'model')} "
                           f"(re-exported or re-calibrated since): {rebuild}")


def select_engine(manifest: dict, tensorrt_version: str, compute_capability: str, precision: str,
                  dla_core: int | None = None) -> dict:
    """The manifest's engine record for this device and precision, checked; else a clear refusal."""
    engines = [e for e in manifest.get("engines", []) if e.get("precision") == precision
               and e.get("dla_core") == dla_core]
    if not engines:
        have = ", ".join(e.get("key", "?") for e in manifest.get("engines", [])) or "none"
        raise EdgesslError(f"no {precision} TensorRT engine in this bundle (has: {have}); "
                           f"build one with `edgessl build-engine --precision {precision}`")
    files = manifest.get("files", {})
    here = [e for e in engines if version_triple(e.get("tensorrt_version", "0")) == version_triple(tensorrt_version)
            and str(e.get("compute_capability")) == str(compute_capability)]
    entry = (here or engines)[-1]
    check_engine(entry, tensorrt_version, compute_capability, files.get(entry.get("source_model", "")))
    return entry


def upsert_engine(manifest: dict, entry: dict) -> dict:
    """A copy of ``manifest`` whose ``engines`` list holds ``entry`` in place of any of the same key."""
    engines = [e for e in manifest.get("engines", []) if e.get("key") != entry["key"]]
    return {**manifest, "engines": engines + [entry]}


def gpu_compute_capability(device: int = 0) -> str:
    """``major.minor`` compute capability of a CUDA GPU: CUDA Python bindings, else ``nvidia-smi``."""
    from .gpu_packages import import_cudart

    try:
        err, props = import_cudart().cudaGetDeviceProperties(device)
        if int(err) == 0:
            return f"{props.major}.{props.minor}"
    except EdgesslError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader", f"--id={device}"],
                             capture_output=True, text=True, timeout=30)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0].strip()
    raise EdgesslError("cannot read the GPU's compute capability: install cuda-python (`pip install "
                       "cuda-python`) or make nvidia-smi available")
