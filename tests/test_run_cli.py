"""``edgessl run``: bad files become error records, counts, exit codes, videos, bad bundles and backends."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from edgessl.cli import main
from edgessl.edge_runtime.backends import available_backends
from edgessl.edge_runtime.data.datasets import open_dataset
from runtime_bundle import make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle"), "patch")


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("messy")
    ds = open_dataset("digits", "test")
    for i in range(3):
        cv2.imwrite(str(d / f"digit{i}.png"), cv2.resize(ds.image(i), (24, 24)))
    (d / "zero.png").write_bytes(b"")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 4)
    cv2.imwrite(str(d / "sixteen.png"), (np.random.RandomState(0).rand(20, 30) * 65535).astype(np.uint16))
    cv2.imwrite(str(d / "rgba.png"), np.random.RandomState(1).randint(0, 255, (20, 30, 4), dtype=np.uint8))
    cv2.imwrite(str(d / "tiny.png"), np.full((1, 1), 200, np.uint8))
    return d


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_messy_folder_scores_what_it_can(bundle, messy_folder, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    rc = main(["run", "--bundle", str(bundle), "--source", str(messy_folder), "--out", str(out),
               "--overlays", str(tmp_path / "ov"), "--batch-size", "3", "--json"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rc == 0
    assert summary["scored"] == 6 and summary["failed"] == 2 and summary["dropped"] == 0
    recs = {r["name"].rsplit("/", 1)[-1]: r for r in _records(out)}
    assert len(recs) == 8
    assert "0 bytes" in recs["zero.png"]["error"] and recs["zero.png"]["score"] is None
    assert "not a readable image" in recs["corrupt.jpg"]["error"]
    for name in ("sixteen.png", "rgba.png", "tiny.png", "digit0.png"):
        assert recs[name]["error"] is None and isinstance(recs[name]["score"], float)
    assert summary["anomalies"] == sum(r["is_anomaly"] is True for r in recs.values())
    assert summary["latency_ms"]["p50"] is not None
    assert len(list((tmp_path / "ov").glob("*.png"))) == 6


def test_nothing_scorable_exits_non_zero(bundle, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "b.png").write_bytes(b"garbage")
    rc = main(["run", "--bundle", str(bundle), "--source", str(tmp_path), "--out", str(tmp_path / "r.jsonl")])
    assert rc == 1
    assert "nothing could be scored" in capsys.readouterr().err
    assert len(_records(tmp_path / "r.jsonl")) == 2


def test_jsonl_to_stdout_without_out(bundle, messy_folder, capsys):
    assert main(["run", "--bundle", str(bundle), "--source", str(messy_folder / "digit*.png"), "--json"]) == 0
    io = capsys.readouterr()
    assert len([json.loads(x) for x in io.out.splitlines()]) == 3
    assert json.loads(io.err.strip().splitlines()[-1])["scored"] == 3


def test_video_file_is_read_frame_by_frame(bundle, tmp_path, capsys):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(12):
        writer.write(np.full((24, 32, 3), 20 * i, np.uint8))
    writer.release()
    rc = main(["run", "--bundle", str(bundle), "--source", str(path), "--out", str(tmp_path / "r.jsonl")])
    assert rc == 0
    recs = _records(tmp_path / "r.jsonl")
    assert [r["index"] for r in recs] == list(range(12)) and all(r["error"] is None for r in recs)


def test_not_a_bundle_and_bad_sources_are_one_line_errors(bundle, tmp_path, capsys):
    assert main(["run", "--bundle", str(tmp_path), "--source", str(tmp_path)]) == 2
    assert "not a bundle" in capsys.readouterr().err
    assert main(["run", "--bundle", str(bundle), "--source", str(tmp_path / "missing")]) == 2
    assert "source not found" in capsys.readouterr().err
    assert main(["run", "--bundle", str(bundle), "--source", "camera:97"]) == 2
    assert "did not open" in capsys.readouterr().err


def test_unavailable_backend_says_which_are(bundle, tmp_path, capsys):
    missing = [b for b in ("ort-cuda", "ort-tensorrt", "tensorrt") if b not in available_backends()]
    if not missing:
        pytest.skip("every backend is available on this machine")
    assert main(["run", "--bundle", str(bundle), "--source", str(tmp_path), "--backend", missing[0]]) == 2
    err = capsys.readouterr().err
    assert f"backend {missing[0]} is not available" in err and "ort-cpu" in err


def test_scored_stream_iterates_results_and_errors_in_order(bundle, messy_folder):
    from edgessl.edge_runtime.pipeline import Pipeline
    from edgessl.edge_runtime.streams.runner import RunOptions, ScoredStream
    from edgessl.edge_runtime.streams.sources import open_source

    stream = ScoredStream(Pipeline.load(bundle), open_source(str(messy_folder)), RunOptions(batch_size=4))
    out = list(stream)
    assert [s.frame.index for s in out] == list(range(8)) and stream.dropped == 0
    assert sum(s.result is None for s in out) == 2
    assert all((s.result is None) == (s.error is not None) for s in out)


def test_overlays_from_a_detector_without_maps_are_refused_in_one_line(tmp_path, capsys):
    knn = make_bundle(tmp_path / "knn", "knn")
    (tmp_path / "img").mkdir()
    cv2.imwrite(str(tmp_path / "img" / "a.png"), np.zeros((20, 20), np.uint8))
    rc = main(["run", "--bundle", str(knn), "--source", str(tmp_path / "img"), "--out", str(tmp_path / "r.jsonl"),
               "--overlays", str(tmp_path / "ov")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "makes no anomaly maps" in err[-1] and "--detector combined" in err[-1]
    assert not (tmp_path / "ov").exists() and not (tmp_path / "r.jsonl").exists()


def test_the_drift_watch_is_quiet_on_normal_images_and_alarms_on_brighter_ones(tmp_path, capsys):
    """The bundle's normal class (digit 0, test images the fit never saw) as the camera saw it at
    fitting, then 1.6x brighter."""
    bundle = make_bundle(tmp_path / "b", "knn")
    ds = open_dataset("digits", "test")
    zeros = [ds.image(i) for i in np.flatnonzero(ds.labels == 0)]
    for name, gain in (("same", 1.0), ("bright", 1.6)):
        (tmp_path / name).mkdir()
        for i in range(120):
            img = np.clip(zeros[i % len(zeros)].astype(np.float32) * gain, 0, 255).astype(np.uint8)
            cv2.imwrite(str(tmp_path / name / f"{i:03d}.png"), img)
    drift = {}
    for name in ("same", "bright"):
        assert main(["run", "--bundle", str(bundle), "--source", str(tmp_path / name), "--out",
                     str(tmp_path / f"{name}.jsonl"), "--json"]) == 0
        drift[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["drift"]
    assert drift["same"]["window"] == 100 and not drift["same"]["alarm"]
    assert drift["bright"]["alarm"] and drift["bright"]["statistic"] > drift["same"]["statistic"]
    assert main(["run", "--bundle", str(bundle), "--source", str(tmp_path / "same" / "00*.png"), "--out",
                 str(tmp_path / "short.jsonl"), "--drift-window", "50"]) == 2
    assert "--drift-window 50 is longer than the 10 inputs" in capsys.readouterr().err
