"""Outputs never destroy inputs, through the real CLI: an output that is an input, holds one or sits
in a sealed bundle is refused in one line (exit 2) with nothing written; an existing file is
replaced only with --force; an output that cannot be written fails loudly; files get the umask's
mode; staging folders of killed processes are cleaned by the next change to the bundle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest

from edgessl.cli import main
from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.files import write_atomic
from runtime_bundle import make_bundle

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("outputs") / "bundle", "patch")


@pytest.fixture
def bundle(made, tmp_path):
    shutil.copytree(made, tmp_path / "bundle")
    return tmp_path / "bundle"


@pytest.fixture
def images(tmp_path):
    d = tmp_path / "images"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"digit{i}.png"), open_dataset("digits", "test").image(i))
    return d


def refused(capsys, argv, *fragments) -> str:
    """``argv`` exits 2 with one error line (after the backend note of a command that got that far)."""
    capsys.readouterr()
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("edgessl: backend")]
    assert len(err) == 1 and "Traceback" not in err[0], err
    for f in fragments:
        assert f in err[0], err[0]
    return err[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_run_out_naming_its_input_is_refused_and_the_input_kept(bundle, images, capsys):
    victim = images / "digit0.png"
    before = victim.read_bytes()
    refused(capsys, ["run", "--bundle", str(bundle), "--source", str(victim), "--out", str(victim)],
            "is an input of this command")
    refused(capsys, ["run", "--bundle", str(bundle), "--source", str(images / "*.png"), "--out", str(victim),
                     "--force"], "is an input of this command")  # one of a glob's files, even with --force
    refused(capsys, ["run", "--bundle", str(bundle), "--source", str(images), "--overlays", str(images.parent)],
            "holds an input")
    assert victim.read_bytes() == before
    sealed = snapshot(bundle)
    refused(capsys, ["run", "--bundle", str(bundle), "--source", str(victim), "--out",
                     str(bundle / "results.jsonl")], "inside the bundle")
    refused(capsys, ["run", "--bundle", str(bundle), "--source", str(victim), "--out",
                     str(bundle / "manifest.json"), "--force"], "inside the bundle")
    assert snapshot(bundle) == sealed and Bundle.load(bundle)


def test_an_existing_out_is_replaced_only_with_force(bundle, images, tmp_path, capsys):
    out = tmp_path / "results.jsonl"
    out.write_text("yesterday's results\n")
    argv = ["run", "--bundle", str(bundle), "--source", str(images), "--out", str(out)]
    refused(capsys, argv, "already exists; pass --force")
    assert out.read_text() == "yesterday's results\n"
    assert main([*argv, "--force"]) == 0
    assert [json.loads(line)["error"] for line in out.read_text().splitlines()] == [None] * 3
    (tmp_path / "results").mkdir()
    refused(capsys, [*argv[:-1], str(tmp_path / "results")], "is a folder; give a file")
    refused(capsys, [*argv[:-2], "--overlays", str(out)], f"{out} is a file, not a folder")


def test_unwritable_outputs_fail_loudly(bundle, images, tmp_path, capsys):
    overlays = tmp_path / "overlays"
    (overlays / "000000_digit0.png").mkdir(parents=True)  # the overlay cannot be written where a folder is
    refused(capsys, ["run", "--bundle", str(bundle), "--source", str(images), "--overlays", str(overlays)],
            "cannot write the overlay")
    if Path("/dev/full").exists():
        refused(capsys, ["run", "--bundle", str(bundle), "--source", str(images), "--out", "/dev/full",
                         "--force"], "cannot write /dev/full")


def test_triage_out_holding_its_sources_is_refused(bundle, images, capsys):
    refused(capsys, ["triage", "--bundle", str(bundle), "--source", str(images), "--out", str(images)],
            "is an input")
    refused(capsys, ["triage", "--bundle", str(bundle), "--source", str(images / "digit0.png"), "--out",
                     str(images / "digit1.png")], "digit1.png is a file, not a folder")


def test_written_files_get_the_umasks_mode(tmp_path):
    old = os.umask(0o027)
    try:
        write_atomic(tmp_path / "a.json", b"{}")
        os.umask(0o022)
        write_atomic(tmp_path / "b.json", b"{}")
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.json").stat().st_mode & 0o777 == 0o644


SLOW_UPDATE = """
import sys, time
from edgessl.edge_runtime.bundle_update import update_bundle

def change(root, m):
    (root / "half.bin").write_bytes(b"x" * 1000)
    print("staging", flush=True)
    time.sleep(60)
    return m

update_bundle(sys.argv[1], change)
"""


def test_a_killed_updates_staging_folder_is_removed_by_the_next_change(bundle, capsys):
    proc = subprocess.Popen([sys.executable, "-c", SLOW_UPDATE, str(bundle)], cwd=REPO, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline().strip() == "staging"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    left = list(bundle.parent.glob(".bundle.*.tmp"))
    assert [p.name for p in left] == [f".bundle.update.{proc.pid}.tmp"] and (left[0] / "half.bin").is_file()
    assert main(["operating-point", "--bundle", str(bundle), "--data", "digits", "--normal-label", "0",
                 "--sensitivity", "0.9", "--max-images", "60"]) == 0
    assert not list(bundle.parent.glob(".bundle.*.tmp"))


def test_export_force_never_deletes_the_run_its_parent_or_another_folder(tiny_run, tmp_path, capsys):
    runs = tmp_path / "runs"
    run = runs / "r"
    shutil.copytree(tiny_run, run)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    before = snapshot(runs)
    refused(capsys, ["export", "--run", str(run), "--out", str(run), "--force"], "is an input")
    refused(capsys, ["export", "--run", str(run), "--out", str(runs), "--force"], "holds an input")
    refused(capsys, ["export", "--run", str(run), "--out", str(other), "--force"], "is not a bundle")
    assert snapshot(runs) == before and (other / "keep.txt").read_text() == "mine"
