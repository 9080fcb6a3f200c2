"""Live cameras scored by one pipeline: the newest frame of each camera, frames waiting together in one batch.

    slots = CameraSlots(["/cam0/image", "/cam1/image"])       # put() from the transport's callbacks
    scorer = LiveScorer(pipe, slots, LiveSteps(decode, publish, now, stamp), max_rate_hz=0)
    scorer.start() ... scorer.stop()

Each camera has a one-frame drop-oldest slot: ``put`` never blocks, and a frame replaced before it
was scored is counted as dropped for that camera, so a slow model never builds a backlog. The worker
takes every waiting frame (at most one per camera) and runs convert -> prepare -> score (one
inference batch) -> publish; a failure in any step is counted against that frame's camera with the
step's name and the worker goes on. Per camera, every frame received ends up processed, dropped or
failed. Latency is ``now() - stamp(msg)`` on the caller's clock (a ROS node's clock follows
simulated time), or ``now() - received`` when the message carries no stamp.
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..drift import DriftWatch
from ..errors import EdgesslError
from ..pipeline import Pipeline, Prepared, Result
from .health import HealthReport, StreamStats
from .rate_limit import RateLimiter


def describe(exc: BaseException) -> str:
    """One line for a failure: an ``EdgesslError``'s message is the reason; anything else is named."""
    return str(exc) if isinstance(exc, EdgesslError) else f"{type(exc).__name__}: {exc}"


@dataclass
class Waiting:
    """A frame in its camera's slot: the transport's message and when it arrived (caller's clock, s)."""

    camera: str
    msg: Any
    received: float


class CameraSlots:
    """One drop-oldest slot and one ``StreamStats`` per camera; thread-safe."""

    def __init__(self, cameras: Sequence[str], info: dict[str, str] | None = None, stale_after_s: float = 5.0,
                 drift: Callable[[], DriftWatch | None] = lambda: None):
        """``drift`` makes each camera's drift watch (None: not watched)."""
        self.cameras = tuple(cameras)
        self.stats = {c: StreamStats(c, info, stale_after_s, drift=drift()) for c in self.cameras}
        self.dropped = dict.fromkeys(self.cameras, 0)
        self._slots: dict[str, Waiting | None] = dict.fromkeys(self.cameras)
        self._cond = threading.Condition()

    def put(self, camera: str, msg: Any, received: float) -> None:
        self.stats[camera].record_received()
        with self._cond:
            if self._slots[camera] is not None:
                self.dropped[camera] += 1
            self._slots[camera] = Waiting(camera, msg, received)
            self._cond.notify()

    def take(self, timeout: float) -> list[Waiting]:
        """Every waiting frame, in camera order; ``queue.Empty`` when none came within ``timeout`` s."""
        with self._cond:
            if not self._cond.wait_for(lambda: any(self._slots.values()), timeout):
                raise queue.Empty
            out = [w for w in self._slots.values() if w is not None]
            self._slots = dict.fromkeys(self.cameras)
            return out

    def discard(self) -> None:
        """Count the waiting frames as dropped (a consumer that stops scoring)."""
        with self._cond:
            for camera, waiting in self._slots.items():
                self.dropped[camera] += waiting is not None
            self._slots = dict.fromkeys(self.cameras)

    def reports(self, max_rate_hz: float = 0.0) -> dict[str, HealthReport]:
        """Each camera's health since the last report (``max_rate_hz``: the scorer's limit, 0: none)."""
        return {c: self.stats[c].report(self.dropped[c], max_rate_hz) for c in self.cameras}


@dataclass
class LiveSteps:
    """What the transport supplies: ``decode(msg)`` -> image, ``publish(camera, result, msg)``,
    ``now()`` and ``stamp(msg)`` in seconds on one clock (``stamp`` 0 when the message has none)."""

    decode: Callable[[Any], np.ndarray]
    publish: Callable[[str, Result, Any], None]
    now: Callable[[], float]
    stamp: Callable[[Any], float]


class LiveScorer:
    """The worker thread of a live consumer of ``slots``; ``max_rate_hz`` can be changed while it runs."""

    def __init__(self, pipeline: Pipeline, slots: CameraSlots, steps: LiveSteps, max_rate_hz: float = 0.0,
                 with_features: bool = False) -> None:
        self.pipeline, self.slots, self.steps, self.with_features = pipeline, slots, steps, with_features
        self.limiter = RateLimiter(max_rate_hz)
        self.batches = self.batched = 0  # inference batches run, frames they held
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def mean_batch_size(self) -> float:
        """Frames per inference batch so far (0 before the first)."""
        return self.batched / self.batches if self.batches else 0.0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._work, name="edgessl-live", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop after the batch in hand; frames still waiting are counted as dropped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
        self.slots.discard()

    def _work(self) -> None:
        while self.limiter.wait(self._stop):
            try:
                batch = self.slots.take(timeout=0.2)
            except queue.Empty:
                continue
            self.limiter.start()
            self.process(batch)

    def process(self, batch: list[Waiting]) -> None:
        """Convert, prepare, score as one batch, publish; each failure is counted against its camera."""
        ready: list[tuple[Waiting, Prepared]] = []
        for w in batch:
            try:
                ready.append((w, self.pipeline.prepare(self.steps.decode(w.msg))))
            except Exception as exc:  # a malformed frame or a bug: counted, reported, the worker goes on
                self._fail(w, "convert", exc)
        if not ready:
            return
        self.batches, self.batched = self.batches + 1, self.batched + len(ready)
        try:
            results = self.pipeline.score_prepared([p for _, p in ready], self.with_features)
        except Exception as exc:  # a backend failure on this batch: counted for each of its frames
            for w, _ in ready:
                self._fail(w, "score", exc)
            return
        for (w, _), result in zip(ready, results):
            try:
                self.steps.publish(w.camera, result, w.msg)
            except Exception as exc:
                self._fail(w, "publish", exc)
                continue
            born = self.steps.stamp(w.msg) or w.received
            self.slots.stats[w.camera].record_processed((self.steps.now() - born) * 1e3, result.latency_ms["total"],
                                                        result.raw_score)

    def _fail(self, waiting: Waiting, step: str, exc: BaseException) -> None:
        self.slots.stats[waiting.camera].record_failed(f"{step}: {describe(exc)}")
