"""The detector contract every scorer follows, and its files.

A detector turns the exported network's named outputs (``FeatureModel``: ``embedding`` ``(B, D)``,
``patches`` ``(B, C, h, w)``) into raw anomaly scores, higher = more anomalous::

    det = load_detector("RUN_DIR/detector")          # or BUNDLE/detector
    out = det.score({"embedding": emb, "patches": patches})   # the outputs named in det.inputs
    out.raw_scores  # (B,) float64
    out.maps        # (B, h, w) float32 raw per-location scores at feature resolution, or None

Files in a detector directory (``save``/``load``):

* ``detector.json``: ``{"format": "edgessl-detector", "version": 1, "kind", "inputs": [...],
  "params": {scalars}, "arrays": {name: {"shape", "dtype"}}}``;
* ``detector.npz``: the arrays named there, plain numeric (``np.load(allow_pickle=False)``), stored
  uncompressed (``np.savez``), so reading one never takes more memory than the file's size.

A bundle's detector is built from the bytes its load hashed (``detector_from_bytes``), never by
opening the files again. Every parameter is range-checked when the detector is built
(``int_param``, ``array_param``): a malformed record is one ``EdgesslError`` line, never a
traceback or a detector that scores nonsense.

The threshold (``edge_runtime.thresholds``) is a separate record: one detector, a threshold per
precision.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping

import numpy as np

from ..errors import EdgesslError
from ..files import read_regular, write_atomic
from ..jsonio import parse_json

FORMAT = "edgessl-detector"
VERSION = 1
CONFIG_FILE = "detector.json"
ARRAYS_FILE = "detector.npz"


@dataclass(frozen=True)
class DetectorOutput:
    raw_scores: np.ndarray  # (B,) float64
    maps: np.ndarray | None = None  # (B, h, w) float32, same units as raw_scores, or None


class Detector:
    """Base class: subclasses set ``kind`` and ``inputs`` and implement the four methods below."""

    kind: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    has_maps: ClassVar[bool] = False
    # Scoring is a matrix product as large as a network layer per image (the patch search): the
    # runtime then scores on one BLAS thread and stops ONNX Runtime's threads spinning after a run,
    # so that the two thread pools do not fight over the cores (on 2 cores: 5x faster per frame).
    blas_bound: ClassVar[bool] = False

    def score(self, outputs: Mapping[str, np.ndarray]) -> DetectorOutput:
        raise NotImplementedError

    def params(self) -> dict:
        """JSON scalars that, with ``arrays``, rebuild the detector."""
        raise NotImplementedError

    def arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def from_parts(cls, params: dict, arrays: dict[str, np.ndarray]) -> "Detector":
        raise NotImplementedError

    def banks(self) -> dict[str, np.ndarray]:
        """Its memory banks by name (none: a detector without one)."""
        return {}

    def grown(self, outputs: Mapping[str, np.ndarray], max_rows: int) -> "Detector":
        """This detector with rows of ``outputs`` (features of new normal images) added to each of its
        memory banks, each to at most ``max_rows`` rows (``bank_growth.grow_bank``)."""
        raise EdgesslError(f"the {self.kind} detector has no memory bank to add images to; adapt needs a knn, "
                           "patch or combined detector (`edgessl fit --detector`)")

    def output(self, outputs: Mapping[str, np.ndarray], name: str, ndim: int, dim: int) -> np.ndarray:
        """The model output ``name`` as float32, checked to have ``ndim`` axes and ``dim`` channels (axis 1)."""
        if name not in outputs:
            raise EdgesslError(f"the {self.kind} detector needs the model output {name!r} "
                               f"(got {sorted(outputs)}); export the model with that output")
        x = np.asarray(outputs[name], np.float32)
        if x.ndim != ndim or x.shape[1] != dim:
            raise EdgesslError(f"model output {name!r} has shape {x.shape}; the {self.kind} detector "
                               f"expects {ndim} axes with {dim} channels (fitted on another backbone?)")
        return x

    def save(self, directory: str | Path) -> None:
        """Write ``detector.npz`` then ``detector.json`` into ``directory`` (atomically each)."""
        directory = Path(directory)
        arrays = {k: np.ascontiguousarray(v) for k, v in self.arrays().items()}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_atomic(directory / ARRAYS_FILE, buf.getvalue())
        config = {
            "format": FORMAT, "version": VERSION, "kind": self.kind, "inputs": list(self.inputs),
            "params": self.params(),
            "arrays": {k: {"shape": list(v.shape), "dtype": str(v.dtype)} for k, v in arrays.items()},
        }
        write_atomic(directory / CONFIG_FILE, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())


def int_param(params: dict, name: str, lo: int, hi: int, kind: str, default: int | None = None) -> int:
    """The integer parameter ``name`` of a ``kind`` detector, from ``lo`` to ``hi``."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise EdgesslError(f"the {kind} detector's parameter {name!r} must be an integer from {lo} to {hi}, "
                           f"got {value!r:.40}")
    return value


def number_param(params: dict, name: str, kind: str, positive: bool = False) -> float:
    """The finite number ``name`` of a ``kind`` detector (``positive``: above 0)."""
    value = params.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or \
            (positive and value <= 0):
        what = "a positive finite number" if positive else "a finite number"
        raise EdgesslError(f"the {kind} detector's parameter {name!r} must be {what}, got {value!r:.40}")
    return float(value)


def array_param(arrays: dict[str, np.ndarray], name: str, ndim: int, kind: str) -> np.ndarray:
    """The array ``name`` of a ``kind`` detector: ``ndim`` axes, none empty, finite numbers."""
    a = arrays.get(name)
    if a is None or a.ndim != ndim or 0 in a.shape or a.dtype.kind not in "fiu" or not np.isfinite(a).all():
        shape = None if a is None else a.shape
        raise EdgesslError(f"the {kind} detector's array {name!r} must be {ndim}-D, non-empty and finite "
                           f"(got {'none' if a is None else f'shape {shape}, {a.dtype}'})")
    return a


def _arrays(data: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays of ``detector.npz``'s bytes: a zip of uncompressed ``.npy`` members, no pickles."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            if any(info.compress_type != zipfile.ZIP_STORED or info.file_size > len(data) for info in z.infolist()):
                raise ValueError("compressed members (write it with np.savez)")
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError) as exc:
        raise EdgesslError(f"{where}: not a readable .npz ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})") \
            from None


def parts_from_bytes(config_bytes: bytes, arrays_bytes: bytes, where: str) -> tuple[dict, dict[str, np.ndarray]]:
    """``detector.json`` and the arrays of ``detector.npz``, from their bytes, checked against each other."""
    cpath, apath = f"{where}/{CONFIG_FILE}", f"{where}/{ARRAYS_FILE}"
    config = parse_json(config_bytes, cpath)
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise EdgesslError(f"{cpath}: not an edgessl detector")
    if config.get("version") != VERSION:
        raise EdgesslError(f"{cpath}: detector format version {config.get('version')} is not supported "
                           f"(expected {VERSION}); re-fit it with `edgessl fit`")
    if not isinstance(config.get("params", {}), dict) or not isinstance(config.get("arrays", {}), dict):
        raise EdgesslError(f"{cpath}: 'params' and 'arrays' must be JSON objects")
    arrays = _arrays(arrays_bytes, apath)
    for name, meta in config.get("arrays", {}).items():
        shape = meta.get("shape") if isinstance(meta, dict) else None
        if name not in arrays or list(arrays[name].shape) != shape:
            raise EdgesslError(f"{apath}: array {name!r} is missing or not of shape {shape}")
    return config, arrays


def read_parts(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``detector.json`` (checked) and the arrays of ``detector.npz`` (checked against it)."""
    directory = Path(directory)
    cpath, apath = directory / CONFIG_FILE, directory / ARRAYS_FILE
    if not cpath.is_file() or not apath.is_file():
        raise EdgesslError(f"{directory}: no fitted detector ({CONFIG_FILE} and {ARRAYS_FILE}); "
                           "fit one with `edgessl fit`")
    return parts_from_bytes(read_regular(cpath, "detector record"), read_regular(apath, "detector arrays"),
                            str(directory))
