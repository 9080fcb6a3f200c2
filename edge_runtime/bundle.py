"""The bundle: one directory the device loads by path, described by ``manifest.json``.

    BUNDLE/manifest.json              what everything is (schema below), sha256 of every other file
    BUNDLE/model.onnx                 fp32 FeatureModel (input "input", outputs "embedding"[, "patches"])
    BUNDLE/detector/detector.json|npz the anomaly detector (edge_runtime.detectors)
    BUNDLE/model.int8-cpu.onnx        Q/DQ INT8, asymmetric uint8 activations  (after calibrate)
    BUNDLE/model.int8-tensorrt.onnx   Q/DQ INT8, symmetric int8 activations     (after calibrate)
    BUNDLE/engines/*.engine           TensorRT engines keyed by TensorRT version and GPU (after build-engine)

Manifest keys (``MANIFEST_VERSION`` 1): ``format``, ``manifest_version``, ``tool_version``, ``created``,
``model`` (input/output names and shapes, opset, verification), ``preprocess`` (a ``PreprocessSpec``),
``detector`` (kind, directory, inputs), ``precisions`` (precision key -> model file and details),
``thresholds`` (precision key -> ``Threshold`` record), ``operating_points`` (optional),
``calibration`` (optional), ``engines`` (list), ``provenance``, ``files`` (relative path -> sha256).

The bundle hash is the sha256 of ``manifest.json``'s bytes: since the manifest lists every file's
sha256, it identifies the whole bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import EdgesslError

FORMAT = "edgessl-bundle"
MANIFEST_VERSION = 1
MANIFEST = "manifest.json"
PRECISIONS = ("fp32", "int8-cpu", "int8-tensorrt")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def precision_key(precision: str, backend: str) -> str:
    """The manifest key of a requested precision on a backend.

    ``fp32`` everywhere; ``int8`` means the asymmetric CPU model on ``ort-cpu`` and the symmetric
    TensorRT-style model on the GPU providers; ``fp16`` exists only as a TensorRT build option.
    """
    if precision == "fp32":
        return "fp32"
    if precision == "int8":
        return "int8-cpu" if backend == "ort-cpu" else "int8-tensorrt"
    raise EdgesslError(f"unknown precision {precision!r}; use fp32 or int8")


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a uniquely named temporary file beside it, flushed to disk
    (fsync), then a rename: a reader sees the old file or the new one, never half of one, and two
    writers never share a temporary file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def seal(bundle_dir: Path, manifest: dict) -> dict:
    """Hash every file of the bundle into ``manifest["files"]`` and write ``manifest.json`` atomically.

    Call it last in any step that changes a bundle: the manifest is the commit point.
    """
    bundle_dir = Path(bundle_dir)
    files = {}
    for p in sorted(bundle_dir.rglob("*")):
        rel = p.relative_to(bundle_dir).as_posix()
        if p.is_file() and rel != MANIFEST and not p.name.startswith("."):
            files[rel] = file_sha256(p)
    manifest = {**manifest, "format": FORMAT, "manifest_version": MANIFEST_VERSION, "files": files}
    write_atomic(bundle_dir / MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return manifest


@dataclass
class Bundle:
    """A loaded, verified bundle."""

    root: Path
    manifest: dict
    hash: str

    @classmethod
    def load(cls, path: str | Path, verify: bool = True) -> "Bundle":
        """Read ``manifest.json``; with ``verify``, refuse a bundle whose files do not match their hashes."""
        root = Path(path)
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise EdgesslError(f"{root}: not a bundle (no {MANIFEST}; make one with `edgessl export`)")
        raw = mpath.read_bytes()
        try:
            manifest = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EdgesslError(f"{mpath}: not valid JSON ({exc.msg})") from None
        if manifest.get("format") != FORMAT:
            raise EdgesslError(f"{mpath}: not an edgessl bundle manifest")
        version = manifest.get("manifest_version")
        if version != MANIFEST_VERSION:
            raise EdgesslError(f"{root}: bundle format version {version} is not supported by this edgessl "
                               f"(expects {MANIFEST_VERSION}); re-export it with `edgessl export`")
        bundle = cls(root, manifest, hashlib.sha256(raw).hexdigest())
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Every listed file exists and has its recorded sha256."""
        for rel, digest in self.manifest.get("files", {}).items():
            p = self.root / rel
            if not p.is_file():
                raise EdgesslError(f"{self.root}: file {rel} listed in the manifest is missing")
            if file_sha256(p) != digest:
                raise EdgesslError(f"{self.root}: {rel} does not match its sha256 in the manifest "
                                   "(modified after export); refusing to load")

    def path(self, rel: str) -> Path:
        return self.root / rel

    def model_file(self, key: str) -> Path:
        precisions = self.manifest.get("precisions", {})
        if key not in precisions:
            have = ", ".join(precisions) or "none"
            hint = " (run `edgessl calibrate`)" if key.startswith("int8") else ""
            raise EdgesslError(f"{self.root}: no {key} model in this bundle (has: {have}){hint}")
        return self.path(precisions[key]["model"])

    def threshold(self, key: str) -> dict:
        thresholds = self.manifest.get("thresholds", {})
        if key not in thresholds:
            have = ", ".join(thresholds) or "none"
            raise EdgesslError(f"{self.root}: no threshold for {key} (has: {have}); re-run the step that makes it")
        return thresholds[key]
