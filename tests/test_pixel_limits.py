"""Limits before decoding, through the real CLI: an image, a DICOM or a ROS message whose header
declares more pixels than the limit is refused before a pixel is decoded (an error record, the
others scored) and memory stays bounded; headers of every accepted format are read right."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from bombs import jpeg_bomb, png_bomb, rle_dicom_bomb, run_measured
from edgessl.cli import main
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.image_headers import image_size
from edgessl.edge_runtime.images import decode_image, pixel_limit
from edgessl.edge_runtime.ros.image import image_from_compressed
from runtime_bundle import make_bundle

PEAK_MB = 1024


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("limits") / "bundle", "knn")


@pytest.fixture(scope="module")
def folder_with_a_bomb(tmp_path_factory):
    d = tmp_path_factory.mktemp("bombed")
    ds = open_dataset("digits", "test")
    for i in range(4):
        cv2.imwrite(str(d / f"good{i}.png"), ds.image(i))
    png_bomb(d / "bomb.png")
    return d


def test_a_png_bomb_is_an_error_record_the_good_images_are_scored_and_memory_stays_bounded(bundle,
                                                                                          folder_with_a_bomb,
                                                                                          tmp_path):
    assert (folder_with_a_bomb / "bomb.png").stat().st_size < 1_000_000
    out = tmp_path / "results.jsonl"
    code, _, err, peak = run_measured(["run", "--bundle", str(bundle), "--source", str(folder_with_a_bomb),
                                       "--out", str(out), "--backend", "ort-cpu"])
    assert code == 0, err
    records = {r["name"].rsplit("/", 1)[-1]: r for r in map(json.loads, out.read_text().splitlines())}
    assert all(records[f"good{i}.png"]["error"] is None for i in range(4))
    assert "30000x30000 = 900 megapixels, over the limit" in records["bomb.png"]["error"]
    assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB"


def test_an_rle_dicom_bomb_is_refused_with_bounded_memory(bundle, folder_with_a_bomb, tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    rle_dicom_bomb(studies / "bomb.dcm")
    assert (studies / "bomb.dcm").stat().st_size < 2000
    cv2.imwrite(str(studies / "good.png"), open_dataset("digits", "test").image(0))
    code, _, err, peak = run_measured(["triage", "--bundle", str(bundle), "--source", str(studies), "--out",
                                       str(tmp_path / "triage"), "--operating-point", "none", "--backend",
                                       "ort-cpu"])
    assert code == 0, err
    rows = (tmp_path / "triage" / "worklist.csv").read_text()
    assert "65535x65535 = 4,295 megapixels, over the limit" in rows and "good.png" in rows
    assert peak < PEAK_MB, f"peak RSS {peak:.0f} MB"


def test_the_limit_is_configurable_and_follows_the_bundle_input(bundle, folder_with_a_bomb, tmp_path, capsys):
    assert pixel_limit(16) == pixel_limit() and pixel_limit(2048) == 256 * 2048 ** 2 and pixel_limit(16, 99) == 99
    out = tmp_path / "r.jsonl"
    assert main(["run", "--bundle", str(bundle), "--source", str(folder_with_a_bomb / "good0.png"), "--out", str(out),
                 "--max-pixels", "10"]) == 1  # 8x8 digits are 64 pixels: nothing scored
    assert "64 pixels, over the limit of 10 pixels" in json.loads(out.read_text())["error"]


@pytest.mark.parametrize("ext,shape", [(ext, shape) for ext in (".png", ".jpg", ".bmp", ".tiff", ".webp")
                                       for shape in ((7, 13), (13, 7, 3))] + [(".pgm", (7, 13)), (".ppm", (13, 7, 3))])
def test_headers_give_the_size_the_decoder_finds(ext, shape):
    img = np.random.RandomState(0).randint(0, 256, shape, dtype=np.uint8)
    data = cv2.imencode(ext, img)[1].tobytes()
    assert image_size(data) == (shape[1], shape[0])
    assert decode_image(data).shape[:2] == shape[:2]


@pytest.mark.parametrize("colour", [False, True])
def test_a_compressed_ros_bomb_is_refused_before_decoding(colour):
    data = jpeg_bomb(colour=colour)
    assert len(data) < 700 and image_size(data) == (30000, 30000)
    with pytest.raises(EdgesslError, match="over the limit"):
        image_from_compressed("jpeg", data)
