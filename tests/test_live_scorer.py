"""The runtime's live multi-camera scorer without ROS: the newest frame per camera, frames waiting
together scored in one batch (the same scores as one by one), and a failure in any step counted
against its camera while the others go on. A real bundle and ONNX Runtime; the transport's steps are
plain functions on numpy frames."""

from __future__ import annotations

import time

import pytest

from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.pipeline import Pipeline
from edgessl.edge_runtime.streams.live import CameraSlots, LiveScorer, LiveSteps
from ros_support import sample_image


@pytest.fixture(scope="module")
def pipe(tmp_path_factory):
    from runtime_bundle import make_bundle

    return Pipeline.load(make_bundle(tmp_path_factory.mktemp("live") / "bundle"))


def decode(msg):
    if isinstance(msg, str):
        raise EdgesslError(f"cannot decode {msg}")
    return msg


class Published(list):
    def __call__(self, camera, result, msg):
        if camera == "broken-link":
            raise ConnectionError("link down")
        self.append((camera, result))


def scorer(pipe, cameras, published):
    slots = CameraSlots(cameras)
    return LiveScorer(pipe, slots, LiveSteps(decode, published, now=time.monotonic, stamp=lambda msg: 0.0)), slots


def test_newest_frame_per_camera_wins_and_every_frame_is_accounted_for():
    slots = CameraSlots(["a", "b"])
    for i in range(3):
        slots.put("a", i, float(i))
    slots.put("b", "only", 0.0)
    taken = slots.take(timeout=1)
    assert [(w.camera, w.msg) for w in taken] == [("a", 2), ("b", "only")]
    assert slots.dropped == {"a": 2, "b": 0}
    slots.put("b", "late", 1.0)
    slots.discard()  # a consumer that stops: what waits is dropped, not lost from the counts
    assert slots.dropped == {"a": 2, "b": 1}


def test_frames_waiting_together_are_scored_in_one_batch(pipe):
    published = Published()
    live, slots = scorer(pipe, ["cam0", "cam1"], published)
    images = {"cam0": sample_image(1, 24, 20), "cam1": 255 - sample_image(1, 30, 40)}
    for camera, img in images.items():
        slots.put(camera, img, time.monotonic())
    live.process(slots.take(timeout=1))
    assert [c for c, _ in published] == ["cam0", "cam1"] and live.mean_batch_size == 2
    (_, r0), (_, r1) = published
    assert r0.latency_ms["inference"] == r1.latency_ms["inference"]  # one inference call, its time shared
    for camera, result in published:
        alone = pipe.score(images[camera])
        assert result.raw_score == pytest.approx(alone.raw_score, rel=1e-5)
    assert all(slots.stats[c].processed == 1 for c in images)


def test_a_failure_in_any_step_is_counted_against_its_camera_and_the_worker_goes_on(pipe):
    published = Published()
    live, slots = scorer(pipe, ["ok", "garbled", "broken-link"], published)
    live.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not all(s.processed + s.failed >= 3 for s in slots.stats.values()):
            slots.put("ok", sample_image(1), time.monotonic())
            slots.put("garbled", "frame 7", time.monotonic())
            slots.put("broken-link", sample_image(1), time.monotonic())
            time.sleep(0.02)
        assert live.running
    finally:
        live.stop()
    ok, garbled, broken = (slots.stats[c] for c in ("ok", "garbled", "broken-link"))
    assert ok.processed >= 3 and ok.failed == 0
    assert garbled.processed == 0 and garbled.failed >= 3 and garbled.last_error == "convert: cannot decode frame 7"
    assert broken.processed == 0 and broken.last_error == "publish: ConnectionError: link down"
    for camera, stats in slots.stats.items():  # received = processed + dropped + failed, per camera
        assert stats.received == stats.processed + slots.dropped[camera] + stats.failed

