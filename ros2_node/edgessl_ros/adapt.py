"""The node's ``~/adapt`` service (``std_srvs/srv/Trigger``): the running node adapts to its cameras'
recent frames, which the caller confirms are normal (a new condition: a brighter camera, a new lot).

The node keeps the messages of each camera's last ``adapt_buffer`` scored frames (``RecentFrames``;
0: no buffer and no service). A call adds them to the detector's memory banks with the code of
``edgessl adapt --accept-flagged`` (``edge_runtime/streams/adapt.py``): frames the current detector
flagged are accepted, since the call confirms them, and are named in the delta's record. It writes
the sealed delta ``BUNDLE/adapt/`` (the base bundle and its signature untouched), reloads the node's
pipeline with it (the next frames are scored with it) and forgets the frames it added. The work runs
on a thread of its own: scoring and the node's other callbacks go on, and the call is answered when
it is done, calls one after the other.

The answer: ``success`` with one line (frames added, the banks' sizes, the new threshold), or
``success: false`` with the refusal's one line: fewer kept frames than the cross-fitting folds, a
bank already full, a node started with ``delta:=false`` (it ignores deltas) or
``require_signed_delta:=true`` (the node's delta is unsigned, so it would refuse it), or whatever the
runtime refuses. Nothing changes on a refusal: a delta the node cannot reload is rolled back to the
one before. The node goes on scoring in every case.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from rclpy.task import Future
from std_srvs.srv import Trigger

from edgessl.edge_runtime.bundle import ADAPT
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.streams.adapt import AdaptConfig, adapt_bundle, adapt_line
from edgessl.edge_runtime.streams.live import describe
from edgessl.edge_runtime.streams.sources import Frame, Source

from . import messages, names
from .names import NodeParams


class RecentFrames:
    """The messages of each camera's last ``size`` frames, numbered in arrival order; thread-safe."""

    def __init__(self, cameras: Sequence[str], size: int) -> None:
        self._frames: dict[str, deque] = {c: deque(maxlen=size) for c in cameras}
        self._numbers = itertools.count(1)
        self._lock = threading.Lock()

    def add(self, camera: str, msg: Any) -> None:
        with self._lock:
            self._frames[camera].append((next(self._numbers), msg))

    def kept(self) -> list[tuple[int, str, Any]]:
        """Every kept frame as ``(number, camera, msg)``, camera by camera, oldest first."""
        with self._lock:
            return [(n, camera, msg) for camera, frames in self._frames.items() for n, msg in frames]

    def forget_through(self, number: int) -> None:
        """Drop the frames numbered ``number`` or lower."""
        with self._lock:
            for frames in self._frames.values():
                while frames and frames[0][0] <= number:
                    frames.popleft()


class KeptFrames(Source):
    """Kept frames as a ``streams.Source`` named ``CAMERA@STAMP``, decoded by ``decode`` as they are read
    (a message it refuses is an error frame)."""

    def __init__(self, name: str, kept: list[tuple[int, str, Any]], decode: Callable[[Any], np.ndarray]) -> None:
        super().__init__(name)
        self.kept, self.decode = kept, decode

    def __len__(self) -> int:
        return len(self.kept)

    def __iter__(self) -> Iterator[Frame]:
        for index, (_, camera, msg) in enumerate(self.kept):
            name = f"{camera}@{messages.stamp_seconds(msg):.9f}"
            try:
                yield Frame(index, name, self.decode(msg))
            except EdgesslError as exc:
                yield Frame(index, name, None, str(exc))


class AdaptService:
    """``~/adapt`` on ``node`` for the cameras a scorer serves: it hands each scored frame to ``keep``;
    ``params`` are the node's (only read-only ones are read), ``decode`` converts a kept message as
    the scorer did, ``reload`` makes the scorer load the bundle again (``EdgesslError`` when refused,
    the old pipeline still scoring)."""

    def __init__(self, node: Node, params: NodeParams, cameras: Sequence[str], decode: Callable[[Any], np.ndarray],
                 reload: Callable[[], None]) -> None:
        self.node, self.params, self.cameras, self.decode, self.reload = node, params, tuple(cameras), decode, reload
        self.recent = RecentFrames(cameras, params.adapt_buffer)
        # its own group: while a call is in progress the subscriptions and timers (the node's default
        # group) go on, and a second call waits for the first
        self.service = node.create_service(Trigger, names.ADAPT, self._serve,
                                           callback_group=MutuallyExclusiveCallbackGroup())

    def keep(self, camera: str, msg: Any) -> None:
        self.recent.add(camera, msg)

    async def _serve(self, _request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        done = Future()
        threading.Thread(target=self._answer, args=(done,), name="edgessl-adapt", daemon=True).start()
        response.success, response.message = await done
        return response

    def _answer(self, done: Future) -> None:
        try:
            answer = (True, self.adapt())
            self.node.get_logger().info(answer[1])
        except Exception as exc:  # a refusal or a bug: answered and logged, the node goes on
            answer = (False, describe(exc))
            self.node.get_logger().warning(f"adapt refused: {answer[1]}")
        done.set_result(answer)

    def adapt(self) -> str:
        """Adapt the bundle to the kept frames, score with it, forget them; the one-line summary
        (``EdgesslError`` when refused, with nothing changed)."""
        p = self.params
        if not p.delta:
            raise EdgesslError("the node was started with delta:=false: it ignores adaptation deltas, so it would not "
                               "score with one; restart it with delta:=true to adapt")
        if p.require_signed_delta:
            raise EdgesslError("the node requires a signed adaptation delta (require_signed_delta:=true), and the "
                               "delta it would write is unsigned: adapt off the device (`edgessl adapt`, then "
                               "`edgessl sign --delta`)")
        kept, folds = self.recent.kept(), AdaptConfig.folds
        if len(kept) < folds:
            raise EdgesslError(f"{len(kept)} frames kept since the last adaptation, fewer than the {folds} "
                               "cross-fitting folds; let the node score more frames of the new condition and call again")
        where = f"{self.node.get_fully_qualified_name()}/adapt: {', '.join(self.cameras)}"
        cfg = AdaptConfig(bundle=p.bundle, data=where, accept_flagged=True, public_key=p.public_key or None,
                          expect_sha256=p.bundle_sha256 or None)
        root = Path(p.bundle)
        with tempfile.TemporaryDirectory(prefix="edgessl-adapt-") as tmp:
            before = _saved_delta(root, Path(tmp))
            s = adapt_bundle(cfg, KeptFrames(where, kept, self.decode))
            try:
                self.reload()
            except Exception:
                _restore_delta(root, before)
                raise
        self.recent.forget_through(max(n for n, _, _ in kept))
        return f"adapted to the kept frames: {adapt_line(s)}; delta {s['delta']}, scoring with it now"

    def destroy(self) -> None:
        self.node.destroy_service(self.service)


def _saved_delta(root: Path, into: Path) -> Path | None:
    """A copy of the bundle's adaptation delta in ``into``; None when it has none."""
    delta = root / ADAPT.folder
    return Path(shutil.copytree(delta, into / ADAPT.folder)) if delta.is_dir() else None


def _restore_delta(root: Path, saved: Path | None) -> None:
    """Put the bundle's adaptation delta back as ``saved`` was (None: none)."""
    shutil.rmtree(root / ADAPT.folder, ignore_errors=True)
    if saved is not None:
        shutil.copytree(saved, root / ADAPT.folder)
