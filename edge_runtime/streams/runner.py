"""Scoring a whole source through a pipeline: prefetch, batch, score, write sinks, summarise.

    for s in ScoredStream(pipe, open_source("camera:0")):   # s.frame, s.result, s.error
        ...
    summary = run_source(pipe, open_source("imgs/"), JsonlSink("results.jsonl"))

A frame that cannot be decoded or preprocessed becomes an error record; the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from ..drift import DriftWatch
from ..errors import EdgesslError
from ..pipeline import Pipeline, Result
from .prefetch import Item, Prefetcher
from .sinks import JsonlSink, OverlaySink, Summary, record
from .sources import Frame, Source


@dataclass
class RunOptions:
    """How a source is scored: images per inference call (offline sources; live ones score each
    frame), decoded frames waiting at most (live sources drop the oldest), a progress bar on
    offline sources of 50 images or more (or of unknown length), and the most pixels an input may
    have to be decoded (0: ``images.pixel_limit`` of the bundle's input size; ``Pipeline.pixel_limit``)."""

    batch_size: int = 8
    queue_size: int = 8
    progress: bool = True
    max_pixels: int = 0


def _score(pipe: Pipeline, items: list[Item], with_features: bool,
           map_space: str) -> list[tuple[Item, object, str | None]]:
    """Each item with its ``Result`` (or None) and error."""
    ok = [it for it in items if it.error is None]
    try:
        results = dict(zip(map(id, ok), pipe.score_prepared([it.prepared for it in ok], with_features, map_space)))
        batch_error = None
    except EdgesslError as exc:  # e.g. a backend failure on this batch: report it for each image
        results, batch_error = {}, str(exc)
    return [(it, results.get(id(it)), it.error or (batch_error if id(it) not in results else None))
            for it in items]


@dataclass
class Scored:
    """One frame's outcome: its ``Result`` or the error that stopped it (and the image, when kept)."""

    frame: Frame
    result: Result | None
    error: str | None
    image: np.ndarray | None = None


class ScoredStream:
    """Iterate ``Scored`` for every frame of ``source``, in order, with decoding and preprocessing in a
    background thread (``prefetch``); ``dropped`` counts frames a live source discarded.

    A frame's result depends on its own pixels only: the network and the detectors treat each image
    of a batch separately (no batch statistics), so the batch it falls in changes no score.
    ``with_features`` adds embeddings; ``map_space`` is ``Pipeline.score_prepared``'s."""

    def __init__(self, pipe: Pipeline, source: Source, options: RunOptions | None = None,
                 keep_images: bool = False, with_features: bool = False, map_space: str = "image"):
        self.pipe, self.source, self.opts = pipe, source, options or RunOptions()
        self.with_features, self.map_space = with_features, map_space
        batch_size = 1 if source.live else self.opts.batch_size
        self.prefetch = Prefetcher(source, lambda f: pipe.prepare(f.image, keep_image=keep_images), batch_size,
                                   live=source.live, queue_size=self.opts.queue_size)

    @property
    def dropped(self) -> int:
        return self.prefetch.dropped

    def __iter__(self) -> Iterator[Scored]:
        bar = _progress(len(self.source), self.opts.progress and not self.source.live)
        try:
            for batch in self.prefetch:
                for item, result, error in _score(self.pipe, batch, self.with_features, self.map_space):
                    yield Scored(item.frame, result, error, item.prepared.image if item.prepared else None)
                if bar is not None:
                    bar.update(len(batch))
        finally:
            if bar is not None:
                bar.close()
            self.source.close()


def run_source(pipe: Pipeline, source: Source, jsonl: JsonlSink | None = None,
               overlays: OverlaySink | None = None, options: RunOptions | None = None,
               with_features: bool = False, drift: DriftWatch | None = None) -> Summary:
    """Score every frame of ``source``; write a record per frame; return the run's summary (with
    ``drift``'s report on the scores, when given)."""
    summary = Summary(source.name, drift)
    stream = ScoredStream(pipe, source, options, keep_images=overlays is not None, with_features=with_features)
    for s in stream:
        summary.add(s.result, s.error)
        if jsonl is not None:
            jsonl.write(record(source.name, s.frame, s.result, s.error))
        if overlays is not None and s.result is not None:
            overlays.write(s.frame, s.image, s.result)
    summary.dropped = stream.dropped
    summary.notes = list(source.notes)
    return summary


def _progress(total: int, enabled: bool):
    """A tqdm bar over ``total`` images (a plain count when the total is unknown, 0); none under 50."""
    if not enabled or 0 < total < 50:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional on the device
        return None
    return tqdm(total=total or None, unit="img", desc="scoring", leave=False)
