"""TensorRT engine records, and the refusal of a stale or foreign engine. Torch-free.

A serialized TensorRT engine only runs on the TensorRT version and the GPU architecture (compute
capability) that built it, and only means what the bundle says while its source ONNX model is the
one in the bundle. ``edgessl build-engine`` adds a record per engine to the bundle's engines delta
(``bundle.py``: ``engines/engines.json``, ``Bundle.engines``)::

    {"key": "trt10.3.0-sm87-int8-1a2b3c4d5e6f", "file": "engines/<key>.engine",
     "tensorrt_version": "10.3.0", "compute_capability": "8.7", "precision": "int8",
     "source": "int8-tensorrt", "source_model": "model.int8-tensorrt.onnx", "source_sha256": "...",
     "strongly_typed": true, "builder_flags": [], "dla_core": null, "min_batch": 1, "opt_batch": 1,
     "max_batch": 16, "workspace_mb": 1024, "threshold": {...}, "comparison": {...}, "created": "..."}

``threshold`` is the engine's own (re-derived at build time from its scores of the held-out
normals; null for a bundle with a classifier head and no detector); ``comparison`` its outputs against ONNX Runtime on its source model. The runtime's
TensorRT backend calls ``select_engine``: an engine of another TensorRT version, another GPU, or an
older source model is refused with a message saying how to rebuild it.
"""

from __future__ import annotations

import shutil
import subprocess

from .errors import EdgesslError

Profile = dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]  # input -> (min, opt, max) shapes


def engine_profile(manifest: dict, batches: tuple[int, int, int]) -> Profile:
    """The one optimization profile of an engine of this bundle (``build-engine``, ONNX Runtime's
    TensorRT provider): the manifest's model input, its batch at ``batches`` (min, opt, max) and
    every other dimension as the manifest records it."""
    spec = manifest.get("model", {}).get("input")
    if not isinstance(spec, dict) or not isinstance(spec.get("shape"), list) or not spec.get("name"):
        raise EdgesslError("the manifest records no model input name and shape (model.input); re-export the bundle")
    dims = spec["shape"][1:]
    if not all(isinstance(d, int) and d > 0 for d in dims):
        raise EdgesslError(f"the manifest's input shape {spec['shape']} has a dynamic dimension besides the batch; "
                           "a TensorRT profile needs each one fixed: re-export the bundle")
    return {spec["name"]: tuple((b, *dims) for b in batches)}


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


def select_engine(engines: list[dict], files: dict[str, str], tensorrt_version: str, compute_capability: str,
                  precision: str, dla_core: int | None = None) -> dict:
    """The record of ``engines`` (a bundle's) for this device, precision and DLA core (None: the
    GPU), checked against the base bundle's ``files`` (path -> sha256); else a clear refusal."""
    matching = [e for e in engines if e.get("precision") == precision and e.get("dla_core") == dla_core]
    if not matching:
        have = ", ".join(e.get("key", "?") for e in engines) or "none"
        where = "the GPU" if dla_core is None else f"DLA core {dla_core}"
        flag = "" if dla_core is None else f" --dla-core {dla_core}"
        raise EdgesslError(f"no {precision} TensorRT engine for {where} in this bundle (has: {have}); "
                           f"build one with `edgessl build-engine --precision {precision}{flag}`")
    here = [e for e in matching if version_triple(e.get("tensorrt_version", "0")) == version_triple(tensorrt_version)
            and str(e.get("compute_capability")) == str(compute_capability)]
    entry = (here or matching)[-1]
    check_engine(entry, tensorrt_version, compute_capability, files.get(entry.get("source_model", "")))
    return entry


def upsert_engine(engines: list[dict], entry: dict) -> list[dict]:
    """``engines`` with ``entry`` in place of any record of the same key."""
    return [e for e in engines if e.get("key") != entry["key"]] + [entry]


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
