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
* ``detector.npz``: the arrays named there, plain numeric (``np.load(allow_pickle=False)``).

The threshold (``edge_runtime.thresholds``) is a separate record: one detector, a threshold per
precision.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Mapping

import numpy as np

from ..files import write_atomic
from ..errors import EdgesslError

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


def read_parts(directory: str | Path) -> tuple[dict, dict[str, np.ndarray]]:
    """``detector.json`` (checked) and the arrays of ``detector.npz`` (checked against it)."""
    directory = Path(directory)
    cpath, apath = directory / CONFIG_FILE, directory / ARRAYS_FILE
    if not cpath.is_file() or not apath.is_file():
        raise EdgesslError(f"{directory}: no fitted detector ({CONFIG_FILE} and {ARRAYS_FILE}); "
                           "fit one with `edgessl fit`")
    try:
        config = json.loads(cpath.read_text())
    except json.JSONDecodeError as exc:
        raise EdgesslError(f"{cpath}: not valid JSON ({exc.msg})") from None
    if config.get("format") != FORMAT:
        raise EdgesslError(f"{cpath}: not an edgessl detector")
    if config.get("version") != VERSION:
        raise EdgesslError(f"{cpath}: detector format version {config.get('version')} is not supported "
                           f"(expected {VERSION}); re-fit it with `edgessl fit`")
    try:
        with np.load(apath, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise EdgesslError(f"{apath}: not a readable .npz ({exc})") from None
    for name, meta in config.get("arrays", {}).items():
        if name not in arrays or list(arrays[name].shape) != meta["shape"]:
            raise EdgesslError(f"{apath}: array {name!r} is missing or not of shape {meta['shape']}")
    return config, arrays
