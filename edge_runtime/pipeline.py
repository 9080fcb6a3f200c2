"""The runtime's public API: load a bundle once, score images.

    from edgessl.edge_runtime.pipeline import Pipeline
    pipe = Pipeline.load("bundle/", backend="auto", precision="int8")
    pipe = Pipeline.load("bundle/", public_key="signer.pub", expect_sha256="5f0c...")  # signed / pinned
    r = pipe.score(image)            # HxW or HxWx3 RGB, uint8/uint16
    r.score, r.is_anomaly, r.anomaly_map, r.latency_ms
    r.class_name, r.probabilities    # a bundle with a classifier head (``classifier`` in the manifest)

Per image: ``preprocess`` (the manifest's spec) -> backend -> raw score -> ``score = (raw - offset) /
scale`` with the threshold record of the chosen precision, so the decision threshold is 1.0. One
session call gives the raw score: the model computes the detector's ``anomaly_score`` and
``anomaly_map`` itself (``graph_scores``); a bundle made before that is scored by the numpy
detector from the model's features. So is a bundle with an adaptation delta (``adapt/``, ``edgessl
adapt``): its detector, with the grown memory bank, scores the network's ``embedding``/``patches``
outputs in numpy (the reference implementation the graph was verified against), with the delta's
threshold for the precision run (ONNX models; a native TensorRT engine with a delta is refused), so
no model or TensorRT engine is rebuilt on the device; ``delta=False``
ignores it. ``is_anomaly`` is ``raw >= raw_threshold`` (or ``score >= threshold``
when the caller overrides the threshold, in normalised units). Anomaly maps are normalised the
same way and resized to the input image's size, undoing the resize/crop policy.

A bundle with a classifier head: ``probabilities`` is the graph's softmax output as ``{class:
p}`` and ``class_name`` its most probable class. A bundle with a head and no detector scores no
anomaly: ``score``, ``raw_score``, ``is_anomaly`` and ``threshold`` are None.

Scoring is split in two so callers can overlap them: ``prepare`` (decode-side, any thread) and
``score_prepared`` (inference + scoring). In a batch, the inference and scoring times of each
result are the batch's times divided by its size.
"""

from __future__ import annotations

import contextlib
import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from .backends import select_backend
from .backends.ort import OrtBackend, OrtOptions
from .backends.tensorrt_native import engine_ready
from .bundle import Bundle, precision_key
from .detectors import Detector, DetectorOutput
from .engines import engine_profile
from .errors import EdgesslError
from .graph_scores import scores_in_graph, scores_of
from .heatmaps import upsample_map
from .images import canonical_image, pixel_limit
from .preprocess import PreprocessSpec, preprocess, resize_geometry
from .thresholds import Threshold


@dataclass(frozen=True)
class MapSource:
    """What an anomaly map is made from: the detector's raw map at feature resolution, the
    threshold record that normalises it, and the shape (and resize policy) it is brought back to."""

    raw: np.ndarray
    threshold: Threshold
    shape: tuple[int, ...]
    spec: PreprocessSpec

    def render(self) -> np.ndarray:
        return map_to_image(self.threshold.normalise(self.raw).astype(np.float32), self.shape, self.spec)


@dataclass
class Result:
    """One image's outcome. ``score`` is normalised (threshold -> 1.0); ``raw_score`` is the detector's
    (all four anomaly fields None without a detector). ``class_name`` and ``probabilities`` come
    from the classifier head (None without one); ``to_dict`` names the class ``class``.

    ``anomaly_map`` (normalised, float32, at the input image's size) is computed on first access:
    a caller that never reads it (a 1280x720 camera that publishes no heatmap) never pays for the
    resize.
    """

    score: float | None
    raw_score: float | None
    is_anomaly: bool | None
    threshold: float | None
    features: np.ndarray | None
    latency_ms: dict[str, float]
    bundle_hash: str
    precision: str
    backend: str
    class_name: str | None = None
    probabilities: dict[str, float] | None = None
    map_source: MapSource | None = field(default=None, repr=False)

    @functools.cached_property
    def anomaly_map(self) -> np.ndarray | None:
        return None if self.map_source is None else self.map_source.render()

    def to_dict(self) -> dict:
        """The JSON-able fields (no arrays)."""
        return {"score": self.score, "raw_score": self.raw_score, "is_anomaly": self.is_anomaly,
                "threshold": self.threshold, "latency_ms": self.latency_ms, "bundle_hash": self.bundle_hash,
                "precision": self.precision, "backend": self.backend, "class": self.class_name,
                "probabilities": self.probabilities}


@dataclass
class Prepared:
    """An image made ready for inference: its model tensor, its shape, and the time it took."""

    tensor: np.ndarray  # C x H x W float32
    shape: tuple[int, ...]  # the input image's shape
    preprocess_ms: float
    image: np.ndarray | None = field(default=None, repr=False)


def map_to_image(amap: np.ndarray, shape: tuple[int, ...], spec: PreprocessSpec) -> np.ndarray:
    """A map over the model input, brought back to an image of ``shape`` (inverse of the resize policy).

    ``stretch``: one bilinear resize. ``shorter_center_crop``: the map covers the centre crop; the
    cropped-away borders get the map's minimum.
    """
    h, w = shape[:2]
    size = spec.image_size
    m = upsample_map(amap, size)
    th, tw, top, left = resize_geometry(h, w, size, spec.resize)
    if (th, tw) != (size, size):
        canvas = np.full((th, tw), m.min(), np.float32)
        canvas[top : top + size, left : left + size] = m
        m = canvas
    if m.shape != (h, w):
        m = cv2.resize(m, (w, h), interpolation=cv2.INTER_LINEAR)
    return m


@functools.lru_cache(maxsize=1)
def _blas_controller():
    from threadpoolctl import ThreadpoolController  # inspecting the loaded libraries takes milliseconds: once

    return ThreadpoolController()


def _one_blas_thread():
    """numpy's BLAS limited to one thread for the duration (about 6 us to enter and leave)."""
    return _blas_controller().limit(limits=1, user_api="blas")


NO_ANOMALY = {"score": None, "raw_score": None, "is_anomaly": None, "threshold": None}  # no detector
ORT_TENSORRT_BATCHES = (1, 1, 16)  # the TensorRT provider's profile: min, opt, max batch


def graph_scored(bundle: Bundle) -> bool:
    """The model's own ``anomaly_score`` decides: its graph computes it and no adaptation delta replaces
    the detector it holds."""
    return scores_in_graph(bundle.manifest) and bundle.adapt is None


def numpy_blas_scoring(bundle: Bundle, detector: Detector | None) -> bool:
    """The detector scores in numpy with a BLAS-sized search (``Detector.blas_bound``): a bundle
    with a detector that its models do not compute themselves."""
    return detector is not None and detector.blas_bound and not graph_scored(bundle)


def _make_backend(bundle: Bundle, name: str, key: str, options: OrtOptions | None, detector: Detector | None,
                  dla_core: int | None) -> tuple[object, str, Threshold | None]:
    """The runner, the precision it runs and its threshold (None without a detector): a native
    engine its own (re-derived at build time), an ONNX Runtime model the bundle's for ``key``."""
    if name == "tensorrt":
        from .backends.tensorrt_native import TensorRTBackend, engine_for

        entry = engine_for(bundle, key, dla_core)
        runner = TensorRTBackend(bundle.read(entry["file"]), entry["file"], dla_core)
        threshold = None if detector is None else Threshold.from_dict(entry["threshold"])
        return runner, f"engine-{entry['precision']}", threshold
    opts = options or OrtOptions()
    if opts.spinning is None:
        opts = replace(opts, spinning=not numpy_blas_scoring(bundle, detector))
    if name == "ort-tensorrt":
        model = bundle.manifest["precisions"][key]["model"]
        cache = bundle.cache_dir / "ort-tensorrt" / bundle.manifest["files"][model][:16]
        opts = replace(opts, int8=key.startswith("int8"), engine_cache_dir=opts.engine_cache_dir or str(cache),
                       trt_profile=opts.trt_profile or engine_profile(bundle.manifest, ORT_TENSORRT_BATCHES))
    model = bundle.model_name(key)
    threshold = None if detector is None else Threshold.from_dict(bundle.threshold(key))
    return OrtBackend(bundle.read(model), model, name, opts), key, threshold



class Pipeline:
    """A loaded bundle on one backend at one precision. Not thread-safe for ``score_prepared``."""

    def __init__(self, bundle: Bundle, backend, detector: Detector | None, precision: str,
                 threshold: Threshold | None, threshold_override: float | None = None):
        self.bundle = bundle
        self.runner = backend
        self.backend: str = backend.name
        self.detector = detector
        self.precision_key = precision
        self.threshold_record = threshold
        self.threshold_override = threshold_override
        self.spec = PreprocessSpec.from_dict(bundle.section("preprocess"))
        self.classes: list[str] | None = bundle.manifest.get("classifier", {}).get("classes")
        blas = numpy_blas_scoring(bundle, detector)
        if blas:  # inspect the loaded libraries here, in the loading thread: threadpoolctl's
            _blas_controller()  # first inspection from a worker thread (the ROS node's) can hang
        self._blas = _one_blas_thread if blas else contextlib.nullcontext

    @classmethod
    def load(cls, bundle_path: str | Path, backend: str = "auto", precision: str = "fp32",
             threshold: float | None = None, options: OrtOptions | None = None,
             public_key: str | Path | None = None, expect_sha256: str | None = None,
             dla_core: int | None = None, delta: bool = True, require_signed_delta: bool = False) -> "Pipeline":
        """Verify the bundle (``Bundle.load``: seal, every file's sha256, no unlisted file, the engines
        delta; with ``public_key`` its signature, with ``expect_sha256`` its pinned hash), pick the
        backend (``auto``: native TensorRT only when the bundle has a valid engine for this device),
        check the precision has a model and (with a detector) a threshold, and load the model and the
        detector (when the bundle has one; a classifier-only bundle has none) from the
        bytes the verification read (then drop them: ``Bundle.release_files``). ``dla_core``: run the
        engine built for that DLA core (native TensorRT only). ``delta``: use the adaptation delta when
        there is one (its detector and threshold); ``require_signed_delta``: only one signed with
        ``public_key``."""
        bundle = Bundle.load(bundle_path, verify=True, public_key=public_key, expect_sha256=expect_sha256,
                             delta=delta, require_signed_delta=require_signed_delta)
        if dla_core is not None and backend not in ("auto", "tensorrt"):
            raise EdgesslError(f"--dla-core runs a DLA engine on the native tensorrt backend, not on {backend}")
        name = select_backend("tensorrt") if dla_core is not None else select_backend(
            backend, lambda: engine_ready(bundle, precision_key(precision, "tensorrt")))
        key = precision_key(precision, name)
        bundle.model_name(key)  # refuses a precision the bundle lacks, before any loading
        detector = None
        if not bundle.head_only:
            bundle.threshold(key)
            bundle.section("detector")  # refuses a manifest with neither
            detector = bundle.detector() if bundle.adapt is None else bundle.adapted_detector()
        runner, runs, record = _make_backend(bundle, name, key, options, detector, dla_core)
        if detector is not None and bundle.adapt is not None:
            record = Threshold.from_dict(bundle.adapt_threshold(runs))
        bundle.release_files()
        return cls(bundle, runner, detector, runs, record, threshold)

    def pixel_limit(self, given: int = 0) -> int:
        """The most pixels an input may have to be decoded for this bundle (``images.pixel_limit``):
        ``given`` when positive, else the default for its input size."""
        return pixel_limit(self.spec.image_size, given)

    @property
    def threshold(self) -> float | None:
        """The decision threshold in normalised units (1.0 unless overridden; None without a detector)."""
        if self.detector is None:
            return None
        return 1.0 if self.threshold_override is None else float(self.threshold_override)

    def prepare(self, image: np.ndarray, keep_image: bool = False) -> Prepared:
        """Check and preprocess one image (``EdgesslError`` when it cannot be used)."""
        t0 = time.perf_counter()
        img = canonical_image(np.asarray(image))
        tensor = preprocess(img, self.spec)
        return Prepared(tensor, img.shape, (time.perf_counter() - t0) * 1e3, img if keep_image else None)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The backend's raw outputs for a preprocessed ``N x C x H x W`` batch."""
        return self.runner.run(batch)

    def score_prepared(self, items: Sequence[Prepared], with_features: bool = False,
                       map_space: str = "image") -> list[Result]:
        """Inference and scoring of prepared images, as one batch.

        ``map_space``: anomaly maps at each input image's size (``image``) or at the model input's
        ``image_size`` square (``model``, where evaluation compares them with resized masks).
        """
        if not items:
            return []
        t0 = time.perf_counter()
        outputs = self.infer(items[0].tensor[None] if len(items) == 1 else np.stack([p.tensor for p in items]))
        t1 = time.perf_counter()
        out = None if self.detector is None else self.detector_output(outputs)
        t2 = time.perf_counter()
        features = outputs.get("embedding") if with_features else None
        probabilities = outputs["probabilities"] if self.classes else None
        n = len(items)
        infer_ms, score_ms = (t1 - t0) * 1e3 / n, (t2 - t1) * 1e3 / n
        results = []
        for i, p in enumerate(items):
            anomaly = NO_ANOMALY if out is None else self._anomaly(out, i, p.shape, map_space)
            probs = None if probabilities is None else dict(zip(self.classes, probabilities[i].tolist()))
            results.append(Result(
                **anomaly,
                features=None if features is None else np.array(features[i], np.float32),
                latency_ms={"preprocess": p.preprocess_ms, "inference": infer_ms, "score": score_ms,
                            "total": p.preprocess_ms + infer_ms + score_ms},
                bundle_hash=self.bundle.hash, precision=self.precision_key, backend=self.backend,
                class_name=None if probs is None else max(probs, key=probs.get), probabilities=probs))
        return results

    def detector_output(self, outputs: dict[str, np.ndarray]) -> DetectorOutput:
        """The raw scores and maps of one batch's model ``outputs``: the graph's own, else (an older
        bundle, an adaptation delta) the detector's in numpy from the features."""
        with self._blas():
            return scores_of(outputs, self.detector) if graph_scored(self.bundle) else self.detector.score(outputs)

    def _anomaly(self, out, i: int, shape: tuple[int, ...], map_space: str) -> dict:
        """Image ``i``'s anomaly fields of ``Result`` from the detector's output ``out``."""
        record, override = self.threshold_record, self.threshold_override
        raw = float(out.raw_scores[i])
        score = float(record.normalise(raw))
        source = None
        if out.maps is not None:
            source = MapSource(out.maps[i], record, (self.spec.image_size,) * 2 if map_space == "model" else shape,
                               self.spec)
        return {"score": score, "raw_score": raw, "threshold": self.threshold, "map_source": source,
                "is_anomaly": bool(record.is_anomaly(raw) if override is None else score >= override)}

    def score(self, image: np.ndarray, with_features: bool = False) -> Result:
        """One image (numpy, edgessl image convention) to its ``Result``."""
        return self.score_prepared([self.prepare(image)], with_features)[0]

    def score_batch(self, images: Sequence[np.ndarray], with_features: bool = False) -> list[Result]:
        """Several images in one inference batch; an unusable image raises ``EdgesslError``."""
        return self.score_prepared([self.prepare(img) for img in images], with_features)
