"""Scoring a whole source through a pipeline: prefetch, batch, score, write sinks, summarise.

A frame that cannot be decoded or preprocessed becomes an error record; the run goes on.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import EdgesslError
from .pipeline import Pipeline
from .prefetch import Item, Prefetcher
from .sinks import JsonlSink, OverlaySink, Summary, record
from .streams import Frame, Source


@dataclass
class RunOptions:
    batch_size: int = 8
    queue_size: int = 8
    with_features: bool = False
    progress: bool = True


def _score(pipe: Pipeline, items: list[Item], with_features: bool) -> list[tuple[Item, object, str | None]]:
    """Each item with its ``Result`` (or None) and error."""
    ok = [it for it in items if it.error is None]
    try:
        results = dict(zip(map(id, ok), pipe.score_prepared([it.prepared for it in ok], with_features)))
        batch_error = None
    except EdgesslError as exc:  # e.g. a backend failure on this batch: report it for each image
        results, batch_error = {}, str(exc)
    return [(it, results.get(id(it)), it.error or (batch_error if id(it) not in results else None))
            for it in items]


def run_source(pipe: Pipeline, source: Source, jsonl: JsonlSink | None = None,
               overlays: OverlaySink | None = None, options: RunOptions | None = None) -> Summary:
    """Score every frame of ``source``; write a record per frame; return the run's summary."""
    opts = options or RunOptions()
    keep = overlays is not None

    def prepare(frame: Frame):
        return pipe.prepare(frame.image, keep_image=keep)

    summary = Summary(source.name)
    batch_size = 1 if source.live else opts.batch_size
    prefetch = Prefetcher(source, prepare, batch_size, live=source.live, queue_size=opts.queue_size)
    bar = _progress(len(source), opts.progress and not source.live)
    try:
        for batch in prefetch:
            for item, result, error in _score(pipe, batch, opts.with_features):
                summary.add(result, error)
                if jsonl is not None:
                    jsonl.write(record(source.name, item.frame, result, error))
                if overlays is not None and result is not None:
                    overlays.write(item.frame, item.prepared.image, result)
            if bar is not None:
                bar.update(len(batch))
    finally:
        if bar is not None:
            bar.close()
        source.close()
    summary.dropped = prefetch.dropped
    summary.notes = list(source.notes)
    return summary


def _progress(total: int, enabled: bool):
    if not enabled or total < 50:
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is optional on the device
        return None
    return tqdm(total=total, unit="img", desc="scoring", leave=False)
