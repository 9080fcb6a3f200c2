"""Decoding and preprocessing in a background thread, overlapped with inference, in batches.

A producer thread pulls frames from a source, runs ``prepare`` on each and puts the item in a
bounded queue; the consumer takes batches. Offline sources (files, videos) use a blocking queue:
nothing is lost, the reader waits for inference. Live sources (cameras) use ``DropOldestQueue``:
when inference falls behind, the oldest waiting frame is dropped and counted, so latency stays
bounded and the newest frames are processed. A live batch takes only what is already waiting.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from ..errors import EdgesslError
from .sources import Frame

_END = object()


@dataclass
class Item:
    """A frame and what ``prepare`` made of it, or the error that stopped it."""

    frame: Frame
    prepared: Any = None
    error: str | None = None


class DropOldestQueue:
    """A bounded FIFO whose ``put`` never blocks: when full, the oldest item is dropped (``dropped``)."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise EdgesslError("queue size must be at least 1")
        self.maxsize = maxsize
        self.dropped = 0
        self._items: deque = deque()
        self._cond = threading.Condition()

    def put(self, item: Any) -> None:
        with self._cond:
            if len(self._items) >= self.maxsize:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify()

    def put_end(self, item: Any) -> None:
        """Append an end marker, never dropping a frame for it."""
        with self._cond:
            self._items.append(item)
            self._cond.notify()

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self._cond:
            if block and not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise queue.Empty
            if not self._items:
                raise queue.Empty
            return self._items.popleft()

    def qsize(self) -> int:
        with self._cond:
            return len(self._items)


class Prefetcher:
    """Iterate batches (lists of ``Item``) of ``frames`` prepared in a background thread.

    ``dropped`` counts frames a live queue discarded. An exception other than ``EdgesslError``
    raised in the thread is re-raised in the consumer.
    """

    def __init__(self, frames: Iterable[Frame], prepare: Callable[[Frame], Any], batch_size: int = 1,
                 live: bool = False, queue_size: int = 8):
        if batch_size < 1:
            raise EdgesslError("batch size must be at least 1")
        self.frames, self.prepare, self.batch_size, self.live = frames, prepare, batch_size, live
        self.queue: Any = DropOldestQueue(queue_size) if live else queue.Queue(maxsize=max(queue_size, batch_size))
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=self._produce, name="edgessl-prefetch", daemon=True)

    @property
    def dropped(self) -> int:
        return self.queue.dropped if self.live else 0

    def _item(self, frame: Frame) -> Item:
        if frame.error is not None:
            return Item(frame, error=frame.error)
        try:
            prepared = self.prepare(frame)
        except EdgesslError as exc:
            return Item(frame, error=str(exc))
        finally:
            frame.image = None  # what waits in the queue is the prepared tensor, not the decoded image
        return Item(frame, prepared)

    def _produce(self) -> None:
        try:
            for frame in self.frames:
                if self._stop.is_set():
                    break
                self.queue.put(self._item(frame))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._failure = exc
        finally:
            (self.queue.put_end if self.live else self.queue.put)(_END)

    def __iter__(self) -> Iterator[list[Item]]:
        self._thread.start()
        done = False
        try:
            while not done:
                batch: list[Item] = []
                item = self.queue.get()
                while item is not _END:
                    batch.append(item)
                    if len(batch) >= self.batch_size:
                        break
                    try:
                        item = self.queue.get(block=not self.live)
                    except queue.Empty:
                        break
                done = item is _END
                if self._failure is not None:
                    raise self._failure
                if batch:
                    yield batch
        finally:
            self._stop.set()
