"""Sources and the prefetching queue: bad frames as records, drops counted, datasets, videos, cameras."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.streams.prefetch import DropOldestQueue, Prefetcher
from edgessl.edge_runtime.streams.sources import DatasetSource, FileSource, Frame, open_source


def test_drop_oldest_queue_keeps_the_newest_and_counts():
    q = DropOldestQueue(3)
    for i in range(7):
        q.put(i)
    assert q.dropped == 4 and [q.get() for _ in range(3)] == [4, 5, 6]


def _frames(n, delay=0.0):
    for i in range(n):
        time.sleep(delay)
        yield Frame(i, f"f{i}", np.full((4, 4), i, np.uint8))


def test_offline_prefetch_keeps_every_frame_in_order_and_batches():
    batches = list(Prefetcher(_frames(10), lambda f: f.image.sum(), batch_size=4))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert [it.frame.index for b in batches for it in b] == list(range(10))
    assert batches[0][1].prepared == 16


def test_live_prefetch_drops_oldest_when_the_consumer_is_slow():
    pre = Prefetcher(_frames(40, delay=0.001), lambda f: f.index, batch_size=1, live=True, queue_size=2)
    seen = []
    for batch in pre:
        seen += [it.prepared for it in batch]
        time.sleep(0.02)
    assert pre.dropped > 0 and len(seen) + pre.dropped == 40
    assert seen == sorted(seen) and seen[-1] == 39  # the newest frame is never dropped


def test_prepare_errors_become_items_and_bugs_propagate():
    def prepare(f):
        if f.index == 1:
            raise EdgesslError("bad frame")
        return f.index

    items = [it for b in Prefetcher(_frames(3), prepare, batch_size=8) for it in b]
    assert [it.error for it in items] == [None, "bad frame", None]

    def buggy(f):
        raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        list(Prefetcher(_frames(3), buggy))
    assert threading.active_count() < 20


def test_file_source_turns_unreadable_files_into_error_frames(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((5, 5), np.uint8))
    (tmp_path / "b.png").write_bytes(b"")
    frames = list(open_source(str(tmp_path)))
    assert [f.error is None for f in frames] == [True, False]
    assert isinstance(open_source(str(tmp_path / "*.png")), FileSource)
    with pytest.raises(EdgesslError, match="no files match"):
        open_source(str(tmp_path / "*.jpg"))


def test_npz_and_mvtec_sources_keep_labels(tmp_path):
    rng = np.random.RandomState(0)
    np.savez(tmp_path / "m.npz", train_images=rng.randint(0, 255, (6, 8, 8), dtype=np.uint8),
             train_labels=np.zeros((6, 1)), test_images=rng.randint(0, 255, (4, 8, 8), dtype=np.uint8),
             test_labels=np.array([[0], [1], [0], [1]]))
    src = open_source(str(tmp_path / "m.npz"))
    assert isinstance(src, DatasetSource) and [f.label for f in src] == [0, 1, 0, 1]
    root = tmp_path / "mvtec"
    for sub in ("train/good", "test/good", "test/crack"):
        (root / sub).mkdir(parents=True)
        cv2.imwrite(str(root / sub / "000.png"), np.zeros((8, 8, 3), np.uint8))
    labels = sorted(f.label for f in open_source(str(root)))
    assert labels == [0, 1]


def _write_video(path, n):
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(n):
        w.write(np.full((24, 32, 3), 10 * i, np.uint8))
    w.release()


def test_video_frames_and_a_video_that_ends_early(tmp_path):
    _write_video(tmp_path / "v.avi", 8)
    src = open_source(str(tmp_path / "v.avi"))
    frames = list(src)
    assert len(frames) == 8 and frames[3].image.shape == (24, 32, 3) and not src.notes
    data = bytearray((tmp_path / "v.avi").read_bytes())  # keep the header and index, destroy the frames
    data[len(data) // 2 : len(data) - 400] = bytes(len(data) - 400 - len(data) // 2)
    (tmp_path / "broken.avi").write_bytes(bytes(data))
    src = open_source(str(tmp_path / "broken.avi"))
    read = list(src)
    assert len(read) < 8 and src.notes and ("ended early" in src.notes[0] or "no frames" in src.notes[0])


def test_camera_that_does_not_open_is_a_clear_error():
    with pytest.raises(EdgesslError, match="camera camera:97 did not open"):
        open_source("camera:97")
