"""The user's own data as training sources (docs/data-sources.md): ROS 2 bags (two topics, Image and
CompressedImage, MCAP and sqlite3), a video, a DICOM folder and a labels list, written here from
real images; each pretrains a step, fits and evaluates. Frame selection, bad input (counted,
skipped, listed), one-line errors, and the on-disk cache (reused, rebuilt when the source changes)."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest

from edgessl.edge_runtime.data.cache import build_store
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.data.user_data import open_source_dataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.preprocess import PreprocessSpec, resize_image
from source_factory import TOPICS, digit_frames, write_bag, write_labelled_pngs, write_video

pytest.importorskip("rosbags", reason="rosbags (the `ros` extra) is not installed")
import edgessl.edge_runtime.ros.bag_dataset  # noqa: E402,F401  (registers bags)

FRAMES, DIGITS = digit_frames(40)
SPEC = PreprocessSpec(16, 3, (0.5,) * 3, (0.25,) * 3)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESSL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("EDGESSL_IN_MEMORY_MB", "0")  # every load goes through the disk cache
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    return write_bag(tmp_path_factory.mktemp("bag") / "run", FRAMES, "mcap", bad_encoding_at=5)


# --- bags ---------------------------------------------------------------------------------------

def test_a_bag_with_two_image_topics_needs_one_named(bag):
    with pytest.raises(EdgesslError) as err:
        open_dataset(str(bag))
    assert str(err.value).count("\n") == 0
    assert "choose one with --topic" in str(err.value)
    assert "/cam/image (40 messages)" in str(err.value) and "/cam/image/compressed (40 messages)" in str(err.value)
    with pytest.raises(EdgesslError, match=r"no image topic '/nope'; image topics here: /cam/image \(40"):
        open_dataset(f"{bag}?topic=/nope")


@pytest.mark.parametrize("topic", TOPICS)
def test_bag_frames_decode_like_the_writer_wrote_them_and_bad_ones_are_listed(bag, topic):
    full = open_source_dataset(f"{bag}?topic={topic}&dedup=0")
    raw = topic == TOPICS[0]
    assert full.report.read == 40 and full.report.kept == (39 if raw else 40)
    if raw:  # message 5 says yuv422: counted, named, skipped; the rest is read
        assert full.report.skipped == {"error": 1}
        assert "yuv422" in full.report.problems[0] and "#5" in full.report.problems[0]
    kept = [i for i in range(40) if not (raw and i == 5)]
    for j in (0, 7, len(full) - 1):
        np.testing.assert_array_equal(full.image(j), FRAMES[kept[j]])


def test_bag_rate_selection_uses_the_header_stamps(bag):
    rate = open_source_dataset(f"{bag}?topic={TOPICS[1]}&fps=2&dedup=0")  # stamps 100 ms apart: 4 s of footage
    assert (rate.report.kept, rate.report.skipped) == (8, {"fps": 32})
    assert [rate.name(i) for i in range(3)] == [f"{TOPICS[1]}#{k}" for k in (0, 5, 10)]


def test_a_bag_frame_trains_byte_for_byte_as_the_node_scores_it(bag):
    """The node's own conversion (edgessl_ros.messages) of the recorded message, resized as the
    pipeline resizes, equals the training cache's row for that frame."""
    pytest.importorskip("rclpy", reason="rclpy (ros-rclpy wheels) is not importable")
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore
    from sensor_msgs.msg import Image

    from edgessl.train.data import load_images
    from edgessl_ros.messages import image_from_msg

    ds = open_dataset(f"{bag}?topic={TOPICS[0]}&dedup=0", "train")
    cached = load_images(ds, SPEC)
    assert type(cached).__name__ == "CachedImages"
    positions = {int(ds.name(i).rsplit("#", 1)[1]): i for i in range(len(ds))}
    with AnyReader([bag], default_typestore=get_typestore(Stores.ROS2_JAZZY)) as reader:
        conn = next(c for c in reader.connections if c.topic == TOPICS[0])
        for index, (_, _, raw) in enumerate(reader.messages(connections=[conn])):
            if index not in positions:
                continue
            m = reader.deserialize(raw, conn.msgtype)
            msg = Image(height=m.height, width=m.width, encoding=m.encoding, is_bigendian=m.is_bigendian,
                        step=m.step, data=bytes(m.data))
            node = resize_image(image_from_msg(msg, 1 << 30), SPEC)
            row = cached[[positions[index]]][0].numpy()
            np.testing.assert_array_equal(row, node.transpose(2, 0, 1))


def test_damaged_bags_are_listed_and_the_rest_is_read(tmp_path):
    root = tmp_path / "recordings"
    good = write_bag(root / "good", FRAMES[:12], "mcap", topics=TOPICS[:1])
    cut = shutil.copytree(good, root / "cut")
    mcap = next(cut.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 2])  # the recording lost its end
    db = write_bag(root / "sqlite", digit_frames(12, size=96)[0], "sqlite3", topics=TOPICS[:1])
    db3 = next(db.glob("*.db3"))
    data = bytearray(db3.read_bytes())
    at = int(len(data) * 0.7) // 4096 * 4096
    data[at : at + 4096] = bytes(4096)  # a damaged page among the messages
    db3.write_bytes(bytes(data))
    full = open_source_dataset(f"{root}?dedup=0")
    assert any("cut" in p and "cannot read as a ROS bag" in p for p in full.report.problems)
    assert any("bag unreadable after message" in p for p in full.report.problems)
    assert 12 < full.report.kept < 24  # all of good/, the sqlite bag up to its damage
    np.testing.assert_array_equal(full.image(0), FRAMES[0])


def test_bag_trains_fits_and_evaluates(bag, tmp_path):
    normal = write_bag(tmp_path / "normal", FRAMES[DIGITS % 2 == 0], topics=TOPICS[1:])
    odd = write_bag(tmp_path / "odd", FRAMES[DIGITS % 2 == 1], topics=TOPICS[1:])
    (tmp_path / "labels.csv").write_text(f"path,label\n{normal.name},normal\n{odd.name},odd\n")
    pipeline(tmp_path, f"{bag}?topic={TOPICS[1]}", f"{tmp_path / 'labels.csv'}", "normal")


# --- video --------------------------------------------------------------------------------------

def test_video_frame_selection_is_counted(tmp_path):
    video = write_video(tmp_path / "run.avi", FRAMES[:20], fps=10, repeat=3)  # each frame held 3 times
    full = open_source_dataset(str(video))
    assert (full.report.read, full.report.kept, full.report.skipped) == (60, 20, {"duplicate": 40})
    every = open_source_dataset(f"{video}?every=4&dedup=0")
    assert every.report.kept == 15 and every.report.skipped == {"every": 45}
    rate = open_source_dataset(f"{video}?fps=2&dedup=0")  # 10 fps video, one frame per 0.5 s
    assert rate.report.kept == 12 and rate.report.skipped == {"fps": 48}
    capped = open_source_dataset(f"{video}?max_frames=5")
    assert capped.report.kept == 5 and "max_frames=5" in capped.report.notes[0]
    for j in (0, 9):  # JPEG frames: close to the written ones, and the kept ones are the distinct ones
        assert np.abs(full.image(j).astype(int) - FRAMES[j]).mean() < 6


def test_empty_selection_names_the_option(tmp_path):
    video = write_video(tmp_path / "still.avi", FRAMES[:1], repeat=30)
    with pytest.raises(EdgesslError, match=r"kept 1 image\(s\), too few for a 'val' split: --dedup removed 29 of 30"):
        open_dataset(str(video), "val")
    with pytest.raises(EdgesslError, match="--every removed"):
        open_dataset(f"{write_video(tmp_path / 'b.avi', FRAMES[:20])}?every=50&dedup=0", "test")


def test_a_video_cut_short_keeps_what_it_could_read(tmp_path):
    video = write_video(tmp_path / "cut.avi", FRAMES[:30])
    video.write_bytes(video.read_bytes()[: video.stat().st_size * 2 // 3])
    full = open_source_dataset(f"{video}?dedup=0")
    assert 10 < full.report.kept < 30
    assert any("ended early" in note for note in full.report.notes)


def test_video_trains_fits_and_evaluates(tmp_path):
    video = write_video(tmp_path / "run.avi", FRAMES)
    write_video(tmp_path / "even.avi", FRAMES[DIGITS % 2 == 0])
    write_video(tmp_path / "odd.avi", FRAMES[DIGITS % 2 == 1])
    (tmp_path / "labels.csv").write_text("even.avi,normal\nodd.avi,odd\n")
    pipeline(tmp_path, str(video), str(tmp_path / "labels.csv"), "normal")


# --- DICOM --------------------------------------------------------------------------------------

@pytest.fixture
def dicom_folder(tmp_path):
    from dicom_factory import write_dicom

    import edgessl.edge_runtime.medical.dicom_dataset  # noqa: F401  (registers DICOM)

    root = tmp_path / "studies"
    grey = FRAMES[..., 0]
    rows = []
    for i, img in enumerate(grey[:30]):
        study = root / f"study{i // 10}" / "series1"
        study.mkdir(parents=True, exist_ok=True)
        write_dicom(study / f"{i:03d}.dcm", img.astype(np.uint16) * 4, bits_stored=10, window=(512, 1024),
                    modality="CR" if i < 24 else "CT")
        rows.append(f"{study.relative_to(root)}/{i:03d}.dcm,{'normal' if DIGITS[i] % 2 == 0 else 'odd'}")
    write_dicom(root / "study0" / "series1" / "nopixels.dcm", grey[0], pixel_data=False)
    write_dicom(root / "study9.dcm", np.stack([grey[30], grey[31]]))  # multi-frame: two images
    return root, rows


def test_dicom_folder_reads_like_triage_with_a_modality_filter(dicom_folder):
    from edgessl.edge_runtime.medical.studies import iter_studies

    root, _ = dicom_folder
    full = open_source_dataset(str(root))
    assert full.report.read == 32 and full.report.kept == 32  # 30 single-frame + 2 frames of one file
    assert full.report.skipped == {"error": 1} and "no pixel data" in full.report.problems[0]
    triage = {s.key: s.image for s in iter_studies([str(root)]) if s.image is not None}
    for i in range(len(full)):
        np.testing.assert_array_equal(full.image(i), triage[full.name(i)])
    cr = open_source_dataset(f"{root}?dicom_modality=CR")
    assert cr.report.kept == 24 + 2 and cr.report.skipped == {"modality": 6, "error": 1}


def test_dicom_trains_fits_and_evaluates(dicom_folder, tmp_path):
    root, rows = dicom_folder
    (root / "labels.csv").write_text("file,label\n" + "\n".join(rows) + "\n")
    pipeline(tmp_path, str(root), str(root / "labels.csv"), "normal")


# --- lists --------------------------------------------------------------------------------------

def test_a_list_row_naming_a_missing_file_is_listed_and_skipped(tmp_path):
    rows = write_labelled_pngs(tmp_path, FRAMES[:10], [str(d % 2) for d in DIGITS[:10]])
    (tmp_path / "list.csv").write_text("\n".join(rows[:5] + ["img/gone.png,1"] + rows[5:]) + "\n")
    full = open_source_dataset(str(tmp_path / "list.csv"))
    assert (full.report.read, full.report.kept, full.report.skipped) == (11, 10, {"missing": 1})
    assert full.report.problems == [f"{tmp_path / 'list.csv'} row 6: img/gone.png not found"]
    assert full.class_names == ["0", "1"]
    np.testing.assert_array_equal(full.labels, DIGITS[:10] % 2)


def test_list_trains_fits_and_evaluates(tmp_path):
    rows = write_labelled_pngs(tmp_path, FRAMES, [str(d % 2) for d in DIGITS])
    (tmp_path / "labels.txt").write_text("# path,label\n" + "\n".join(rows + ["img/missing.png,0"]) + "\n")
    pipeline(tmp_path, str(tmp_path / "labels.txt"), str(tmp_path / "labels.txt"), "0")


def test_options_are_refused_for_sources_they_do_not_apply_to():
    with pytest.raises(EdgesslError, match="apply to videos, bags and DICOM"):
        open_dataset("digits?every=2")
    with pytest.raises(EdgesslError, match="unknown source option 'stride'"):
        open_dataset("digits?stride=2")


# --- the cache ----------------------------------------------------------------------------------

def test_the_cache_is_reused_and_rebuilt_when_the_source_changes(tmp_path, cache_dir):
    from edgessl.train.data import load_images, load_uint8

    video = write_video(tmp_path / "run.avi", FRAMES[:20])
    ds = open_dataset(str(video), "train")
    first = load_images(ds, SPEC)
    np.testing.assert_array_equal(first[:].numpy(), load_uint8(ds, SPEC).numpy())  # disk equals memory
    entry = first.store.path
    stamp = entry.stat().st_mtime_ns
    again = load_images(open_dataset(str(video), "train"), SPEC)
    assert again.store.path == entry and entry.stat().st_mtime_ns == stamp  # read, not rebuilt
    write_video(video, FRAMES[20:40])  # same path, new footage
    changed = load_images(open_dataset(str(video), "train"), SPEC)
    assert changed.store.path != entry and entry.is_file()
    assert not np.array_equal(changed[:].numpy(), first[: len(changed)].numpy())
    assert not list(cache_dir.glob("*.tmp"))


def test_a_failed_build_loses_nothing_cached(tmp_path, cache_dir):
    from edgessl.train.data import load_images

    before = load_images(open_dataset(str(write_video(tmp_path / "ok.avi", FRAMES[:20])), "train"), SPEC)
    broken = tmp_path / "broken"
    broken.mkdir()
    for i in range(3):
        (broken / f"{i}.png").write_bytes(b"\x89PNG\r\n garbage")
    with pytest.raises(EdgesslError, match="not a readable image"):
        load_images(open_dataset(str(broken), "train"), SPEC)
    assert before.store.path.is_file() and not list(cache_dir.glob("*.tmp"))
    np.testing.assert_array_equal(before[[0]].numpy(), load_images(open_dataset(str(tmp_path / "ok.avi"), "train"),
                                                                    SPEC)[[0]].numpy())


def test_concurrent_builders_build_once():
    calls = []

    def rows():
        calls.append(1)
        return iter(np.full((4, 1, 2, 2), 7, np.uint8))

    threads = [threading.Thread(target=build_store, args=({"k": "same"}, (4, 1, 2, 2), rows)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert (build_store({"k": "same"}, (4, 1, 2, 2), rows).read(np.array([3, 0])) == 7).all() and len(calls) == 1


# --- the pipeline on each source ----------------------------------------------------------------

def pipeline(tmp_path, unlabelled: str, labelled: str, normal: str) -> None:
    """Pretrain a step on ``unlabelled``, fit a detector on its (normal) images, evaluate on ``labelled``."""
    pytest.importorskip("torch")
    from edgessl.train.evaluate import EvaluateConfig, evaluate_run
    from edgessl.train.fit import FitConfig, fit_run
    from edgessl.train.pretrain import PretrainConfig, pretrain

    run = tmp_path / "run"
    summary = pretrain(PretrainConfig(data=unlabelled, backbone="mobilenet_v3_small", image_size=16, batch_size=8,
                                      max_steps=1, device="cpu", out=str(run)))
    assert summary["steps"] == 1 and summary["data_report"]["kept"] > 0
    fit_normal = normal if unlabelled == labelled else None
    fitted = fit_run(FitConfig(run=str(run), data=unlabelled, normal_label=fit_normal, target_fpr=0.3, confidence=0.5,
                               device="cpu"))
    assert fitted["normal_label"] == fit_normal
    result = evaluate_run(EvaluateConfig(run=str(run), data=labelled, normal_label=normal, k=5, linear_probe=False,
                                         device="cpu"))
    assert result["test_images"] > 0 and 0.0 <= result["auroc"] <= 1.0 and result["normal_label"] == normal


def test_command_line_options_are_written_into_the_source_string():
    from edgessl.cli import build_parser
    from edgessl.cli.options import selected_data
    from edgessl.edge_runtime.data.source_text import SourceOptions, parse_source

    parser, _ = build_parser()
    for command in (["pretrain", "--out", "r"], ["fit", "--run", "r"], ["evaluate", "--run", "r"],
                    ["calibrate", "--bundle", "b"], ["finetune", "--run", "r", "--out", "o"],
                    ["operating-point", "--bundle", "b", "--sensitivity", "0.9", "--normal-label", "0"]):
        args = parser.parse_args([*command, "--data", "run.mcap?every=2", "--topic", "/cam/image", "--fps", "5",
                                  "--dedup", "0", "--dicom-modality", "CR"])
        path, options = parse_source(selected_data(args))
        assert path == "run.mcap"
        assert options == SourceOptions(topic="/cam/image", every=2, fps=5.0, dedup=0.0, dicom_modality="CR")
    args = parser.parse_args(["pretrain", "--out", "r", "--data", "digits"])
    assert selected_data(args) == "digits"  # nothing given, nothing written
