"""Bad input gives one line on stderr, exit status 2 and no traceback."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from requires import require

require("torch")

from edgessl.cli import main  # noqa: E402

SMALL = ["--backbone", "mobilenet_v3_small", "--image-size", "16", "--device", "cpu"]


def one_line_error(capsys, argv: list[str], expected: str) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"edgessl {argv[0]}: error: ") and "Traceback" not in err, err
    assert expected in err, err
    return err


def write_pngs(folder, n, value=0):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:02d}.png"), np.full((20, 20), value + 9 * i, np.uint8))


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """A two-class ImageFolder (cat, dog) and a one-step mobilenet run on it."""
    root = tmp_path_factory.mktemp("errors")
    write_pngs(root / "data" / "cat", 12)
    write_pngs(root / "data" / "dog", 12, value=120)
    run = root / "run"
    assert main(["pretrain", "--data", str(root / "data"), "--method", "rotation", *SMALL, "--batch-size", "4",
                 "--max-steps", "1", "--out", str(run)]) == 0
    return root / "data", run


def test_missing_path_exits_2_without_traceback_from_the_shell(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "edgessl", "pretrain", "--data", str(tmp_path / "nope.npz"),
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"edgessl pretrain: error: data source not found: {tmp_path / 'nope.npz'}"
                                                " (give 'digits', a .npz, a folder, a video, a ROS 2 bag, DICOM, "
                                                "or a .csv/.txt list)"]
    assert not proc.stdout


def test_bad_data_sources(tmp_path, capsys):
    out = str(tmp_path / "run")
    one_line_error(capsys, ["pretrain", "--data", str(tmp_path / "missing"), "--out", out], "not found")
    (tmp_path / "empty").mkdir()
    one_line_error(capsys, ["pretrain", "--data", str(tmp_path / "empty"), "--out", out], "no images found")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "zz.png").write_bytes(b"\x89PNG\r\n garbage")
    one_line_error(capsys, ["pretrain", "--data", str(tmp_path / "broken"), *SMALL, "--out", out],
                   "not a readable image")


def test_bad_options(tmp_path, capsys, folder_run):
    data, _ = folder_run
    out = str(tmp_path / "run")
    one_line_error(capsys, ["pretrain", "--data", str(data), "--image-size", "8", "--out", out], "too small")
    one_line_error(capsys, ["pretrain", "--data", str(data), *SMALL, "--batch-size", "512", "--out", out],
                   "lower --batch-size")
    one_line_error(capsys, ["pretrain", "--data", str(data), *SMALL, "--resume", "--out", out], "nothing to resume")
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("methd: simclr\n")
    one_line_error(capsys, ["pretrain", "--config", str(cfg), "--out", out], "unknown option 'methd'")


def test_label_not_in_the_data(capsys, folder_run):
    data, run = folder_run
    err = one_line_error(capsys, ["evaluate", "--run", str(run), "--data", str(data), "--normal-label", "bird",
                                  "--device", "cpu"], "'bird' is not in")
    assert "cat, dog" in err


def test_not_a_run_and_a_checkpoint_from_another_backbone(tmp_path, capsys, folder_run):
    data, run = folder_run
    one_line_error(capsys, ["evaluate", "--run", str(tmp_path), "--data", str(data)], "not a run directory")
    foreign = tmp_path / "foreign"
    shutil.copytree(run, foreign)
    meta = json.loads((foreign / "model.json").read_text())
    meta["backbone"]["name"] = "resnet18"
    (foreign / "model.json").write_text(json.dumps(meta))
    for argv in (["evaluate", "--run", str(foreign), "--data", str(data), "--device", "cpu"],
                 ["finetune", "--run", str(foreign), "--data", str(data), "--out", str(tmp_path / "ft")]):
        one_line_error(capsys, argv, "another backbone")
