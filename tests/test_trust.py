"""Sealed, signed and pinned bundles, through the real CLI: every refusal is one line and exit 2."""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from edgessl.cli import main
from edgessl.edge_runtime.bundle import Bundle, seal
from edgessl.edge_runtime.signing import SIGNATURE
from edgessl.edge_runtime.bundle_update import update_bundle
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.errors import EdgesslError
from runtime_bundle import make_bundle
from cli_refusal import refused


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("trust") / "bundle", "knn")


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    assert main(["keygen", "--out", str(d / "signer")]) == 0
    assert main(["keygen", "--out", str(d / "other")]) == 0
    return {"private": d / "signer", "public": d / "signer.pub", "other_private": d / "other",
            "other_public": d / "other.pub"}


@pytest.fixture
def bundle(made, tmp_path):
    b = tmp_path / "bundle"
    shutil.copytree(made, b)
    return b


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    p = tmp_path_factory.mktemp("img") / "digit.png"
    cv2.imwrite(str(p), open_dataset("digits", "test").image(0))
    return p


def _manifest(b):
    return json.loads((b / "manifest.json").read_text())


def _write_manifest(b, m):
    (b / "manifest.json").write_text(json.dumps(m, indent=2, sort_keys=True))


def _run(b, image, *extra):
    return ["run", "--bundle", str(b), "--source", str(image), *extra]


def test_sealed_bundle_runs_and_verifies(bundle, image, capsys):
    assert main(_run(bundle, image)) == 0
    assert main(["bundle", "verify", "--bundle", str(bundle)]) == 0
    assert "ok (seal" in capsys.readouterr().out


def test_hand_edited_manifest_is_refused(bundle, image, capsys):
    m = _manifest(bundle)
    m["thresholds"]["fp32"]["raw_threshold"] *= 100  # what an attacker on the device would try first
    _write_manifest(bundle, m)
    refused(capsys, _run(bundle, image), "edited after it was sealed")
    refused(capsys, ["bundle", "verify", "--bundle", str(bundle)], "edited after it was sealed")


def test_manifest_without_files_is_refused(bundle, image, capsys):
    m = _manifest(bundle)
    del m["files"]
    _write_manifest(bundle, m)
    refused(capsys, _run(bundle, image), "no 'files' list")


def test_removed_seal_is_refused(bundle, image, capsys):
    m = _manifest(bundle)
    del m["seal"]
    _write_manifest(bundle, m)
    refused(capsys, _run(bundle, image), "has no seal")


def test_unlisted_file_is_refused(bundle, image, capsys):
    (bundle / "detector" / "extra.npz").write_bytes(b"planted")
    refused(capsys, _run(bundle, image), "detector/extra.npz is not listed in the manifest")
    (bundle / "detector" / "extra.npz").unlink()
    (bundle / ".hidden").write_bytes(b"")
    refused(capsys, ["bundle", "verify", "--bundle", str(bundle)], ".hidden is not listed")


def _reseal_with_higher_threshold(b):
    """The attacker who recomputes every digest: a consistent, sealed bundle that decides differently."""
    m = Bundle.load(b).manifest
    m["thresholds"]["fp32"]["raw_threshold"] *= 100
    seal(b, m)
    Bundle.load(b, verify=False).check_seal()  # the seal alone cannot tell


def test_resealed_bundle_is_refused_under_a_key_or_a_pin(bundle, keys, image, capsys):
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    pin = Bundle.load(bundle).hash
    assert main(_run(bundle, image, "--public-key", str(keys["public"]), "--expect-sha256", pin)) == 0
    _reseal_with_higher_threshold(bundle)
    refused(capsys, _run(bundle, image, "--public-key", str(keys["public"])), "bad signature")
    refused(capsys, _run(bundle, image, "--expect-sha256", pin), "is not the pinned", pin)
    refused(capsys, ["bundle", "verify", "--bundle", str(bundle), "--public-key", str(keys["public"])], "bad signature")
    refused(capsys, _run(bundle, image), "changed after the bundle was signed")  # even without the key
    (bundle / SIGNATURE).unlink()  # ... so the attacker drops the signature: only a key or a pin tells
    assert main(["bundle", "verify", "--bundle", str(bundle)]) == 0


def test_bad_signatures_are_refused(bundle, keys, image, capsys):
    refused(capsys, _run(bundle, image, "--public-key", str(keys["public"])), "not signed")
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["other_private"])]) == 0
    refused(capsys, _run(bundle, image, "--public-key", str(keys["public"])), "bad signature")
    record = json.loads((bundle / SIGNATURE).read_text())
    record["signature"] = "not base64!"
    (bundle / SIGNATURE).write_text(json.dumps(record))
    refused(capsys, _run(bundle, image, "--public-key", str(keys["other_public"])), "bad signature")
    (bundle / SIGNATURE).write_text("garbage")
    refused(capsys, _run(bundle, image, "--public-key", str(keys["other_public"])), "signature.json: not valid JSON")
    (bundle / SIGNATURE).unlink()
    refused(capsys, _run(bundle, image, "--public-key", str(keys["private"])), "not a PEM public key")


def test_every_bundle_command_takes_the_trust_options(bundle, keys, capsys, tmp_path):
    pub = ["--public-key", str(keys["public"])]
    refused(capsys, ["bench", "--bundle", str(bundle), "--iterations", "1", "--no-eager", *pub], "not signed")
    refused(capsys, ["triage", "--bundle", str(bundle), "--source", str(tmp_path), "--out", str(tmp_path / "t"),
                      *pub], "not signed")
    refused(capsys, ["operating-point", "--bundle", str(bundle), "--data", "digits", "--normal-label", "0",
                      "--sensitivity", "0.9", "--expect-sha256", "0" * 64], "is not the pinned")
    refused(capsys, ["evaluate", "--bundle", str(bundle), *pub], "not signed")
    refused(capsys, ["replay", "--source", str(tmp_path / "bag"), "--bundle", str(bundle), *pub], "not signed")


def test_update_drops_the_signature_and_says_so(bundle, keys, capsys):
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    capsys.readouterr()

    def note(root, m):
        (root / "notes.txt").write_text("calibrated elsewhere")
        return {**m, "note": "changed"}

    b = update_bundle(bundle, note)
    assert "signature was removed; sign it again" in capsys.readouterr().err
    assert b.signature is None and b.manifest["note"] == "changed" and "notes.txt" in b.manifest["files"]
    with pytest.raises(EdgesslError, match="not signed"):
        Bundle.load(bundle, public_key=keys["public"])
    assert not list(bundle.parent.glob(".bundle.*.tmp"))  # no staging left behind


def test_update_refuses_what_loading_refuses_and_fails_cleanly(bundle):
    before = (bundle / "manifest.json").read_bytes()

    def boom(root, m):
        (root / "half.onnx").write_bytes(b"half")
        raise EdgesslError("the change failed")

    with pytest.raises(EdgesslError, match="the change failed"):
        update_bundle(bundle, boom)
    assert (bundle / "manifest.json").read_bytes() == before and not (bundle / "half.onnx").exists()
    with pytest.raises(EdgesslError, match="changed while this command ran"):
        update_bundle(bundle, lambda root, m: m, based_on="0" * 64)
    (bundle / "stray.bin").write_bytes(b"x")
    with pytest.raises(EdgesslError, match="stray.bin is not listed"):
        update_bundle(bundle, lambda root, m: m)


def test_operating_point_goes_through_the_update_path(bundle, keys, capsys):
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    argv = ["operating-point", "--bundle", str(bundle), "--data", "digits", "--normal-label", "0",
            "--sensitivity", "0.9", "--max-images", "120", "--public-key", str(keys["public"])]
    capsys.readouterr()
    assert main(argv) == 0
    assert "sign it again" in capsys.readouterr().err
    b = Bundle.load(bundle)
    assert "sensitivity=0.9" in b.manifest["operating_points"]["fp32"] and b.signature is None


def test_inspect_shows_what_is_in_the_bundle(bundle, keys, capsys):
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    capsys.readouterr()
    assert main(["bundle", "inspect", "--bundle", str(bundle), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    m = Bundle.load(bundle).manifest
    assert set(s["files"]) == set(m["files"]) == {"model.onnx", "detector/detector.json", "detector/detector.npz"}
    assert s["thresholds"]["fp32"]["raw_threshold"] == m["thresholds"]["fp32"]["raw_threshold"]
    assert s["signature"]["signed"]
    assert s["signature"]["key_id"] == json.loads((bundle / SIGNATURE).read_text())["key_id"]
    assert main(["bundle", "inspect", "--bundle", str(bundle)]) == 0
    text = capsys.readouterr().out
    assert Bundle.load(bundle).hash in text and "ed25519, key id" in text


def test_keygen_never_overwrites(keys, capsys):
    refused(capsys, ["keygen", "--out", str(keys["private"])], "already exists")
    assert oct(keys["private"].stat().st_mode & 0o777) == "0o600"


UPDATER = """
import sys
from edgessl.edge_runtime.bundle_update import update_bundle
bundle, who = sys.argv[1], sys.argv[2]
for i in range(8):
    update_bundle(bundle, lambda root, m: {**m, "notes": {**m.get("notes", {}), f"{who}{i}": i}})
"""


def test_concurrent_updates_lose_no_change(bundle):
    repo = Path(__file__).resolve().parents[1]
    procs = [subprocess.Popen([sys.executable, "-c", UPDATER, str(bundle), who], cwd=repo, stderr=subprocess.PIPE)
             for who in ("a", "b")]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    assert set(Bundle.load(bundle).manifest["notes"]) == {f"{w}{i}" for w in "ab" for i in range(8)}


def test_resealed_garbage_is_refused_naming_the_field(bundle, image, capsys):
    m = Bundle.load(bundle).manifest
    m["thresholds"]["fp32"]["raw_threshold"] = "0.5"
    seal(bundle, m)
    refused(capsys, _run(bundle, image), "threshold: field 'raw_threshold' must be float")
    m["precisions"]["fp32"]["model"] = "../model.onnx"
    seal(bundle, m)
    refused(capsys, _run(bundle, image), "precisions.fp32.model must name a file in the bundle")


# -- the bytes verified are the bytes used ---------------------------------------------------------

class SwapAtOpen:
    """At the ``at``-th open of a file of ``bundle`` (``os.open``, ``open``, ``io.open``: every way
    Python opens one), move the attacker's files of ``swaps`` (bundle path -> prepared file) into
    the bundle, then let the open go on: a swap between any two reads of a load."""

    def __init__(self, monkeypatch, bundle: Path, swaps: dict[str, Path], at: int):
        self.bundle, self.swaps, self.at, self.opened = bundle.resolve(), swaps, at, []
        for module in (os, builtins, io):
            monkeypatch.setattr(module, "open", self._hooked(getattr(module, "open")))

    def _hooked(self, real):
        def hooked(file, *args, **kwargs):
            if isinstance(file, (str, bytes, os.PathLike)):
                path = Path(os.fsdecode(file)).resolve()
                if path.is_relative_to(self.bundle):
                    if len(self.opened) == self.at:
                        for rel, prepared in self.swaps.items():
                            os.replace(prepared, self.bundle / rel)
                    self.opened.append(path.relative_to(self.bundle).as_posix())
            return real(file, *args, **kwargs)
        return hooked


def _attackers_files(bundle: Path, what: str, where: Path) -> dict[str, Path]:
    """A consistent, re-sealed variant of ``bundle`` (threshold x100, and for ``detector``/``model`` that
    file replaced too), and the files of it to swap in: the manifest alone, or the manifest and the file."""
    from edgessl.edge_runtime.detectors import KnnDetector
    from runtime_bundle import write_model

    shutil.copytree(bundle, where)
    (where / SIGNATURE).unlink(missing_ok=True)
    if what == "detector":
        bank = Bundle.load(bundle).detector().bank
        KnnDetector(-bank, k=3, normalised=True).save(where / "detector")
    if what == "model":
        write_model(where / "model.onnx", seed=1)
    m = Bundle.load(where, verify=False).manifest
    m["thresholds"]["fp32"]["raw_threshold"] *= 100
    seal(where, m)
    return {rel: where / rel for rel in ("manifest.json", "detector/detector.npz", "model.onnx")
            if (where / rel).read_bytes() != (bundle / rel).read_bytes()}


def _scored(argv, capsys) -> tuple[int, list[dict]]:
    capsys.readouterr()
    code = main(argv)
    records = [{k: v for k, v in r.items() if k != "latency_ms"} for r in map(json.loads, capsys.readouterr()
                                                                             .out.splitlines())]
    return code, records


@pytest.mark.parametrize("what", ["manifest", "detector", "model"])
def test_a_file_swapped_between_any_two_reads_of_a_load_is_never_used(bundle, keys, image, what, tmp_path,
                                                                        monkeypatch, capsys):
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    pin = Bundle.load(bundle).hash
    argv = _run(bundle, image, "--public-key", str(keys["public"]), "--expect-sha256", pin)
    with monkeypatch.context() as m:
        clean = SwapAtOpen(m, bundle, {}, at=-1)
        code, expected = _scored(argv, capsys)
    assert code == 0 and len(expected) == 1 and expected[0]["error"] is None
    assert sorted(clean.opened) == sorted({*Bundle.load(bundle).manifest["files"], "manifest.json", SIGNATURE})
    for at in range(len(clean.opened)):  # every file of the bundle is opened once: a swap before each open
        copy = tmp_path / f"copy{at}"
        shutil.copytree(bundle, copy)
        swaps = _attackers_files(copy, what, tmp_path / f"attacker{at}")
        with monkeypatch.context() as m:
            SwapAtOpen(m, copy, swaps, at)
            code, got = _scored(_run(copy, image, "--public-key", str(keys["public"]), "--expect-sha256", pin),
                                capsys)
        assert code == 2 or [{**r, "source": None, "name": None} for r in got] == \
            [{**r, "source": None, "name": None} for r in expected], (at, got)


def test_sign_signs_the_bytes_it_verified(bundle, keys, monkeypatch, tmp_path, capsys):
    swaps = _attackers_files(bundle, "manifest", tmp_path / "attacker")
    with monkeypatch.context() as m:
        hook = SwapAtOpen(m, bundle, swaps, at=1)  # after sign read the manifest, before it read the files
        code = main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])])
    assert hook.opened[0] == "manifest.json" and code in (0, 2)
    refused(capsys, ["bundle", "verify", "--bundle", str(bundle), "--public-key", str(keys["public"])],
             "bad signature" if code == 0 else "not signed")  # the swapped-in manifest was never signed


def test_symbolic_links_and_a_forged_key_id_are_refused(bundle, keys, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "planted.npz").write_bytes(b"x")
    (bundle / "detector" / "more").symlink_to(outside)  # a walk that does not follow links would miss it
    refused(capsys, ["bundle", "verify", "--bundle", str(bundle)], "detector/more is a symbolic link")
    (bundle / "detector" / "more").unlink()
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    record = json.loads((bundle / SIGNATURE).read_text())
    (bundle / SIGNATURE).write_text(json.dumps({**record, "key_id": "0" * 16}))
    refused(capsys, ["bundle", "verify", "--bundle", str(bundle), "--public-key", str(keys["public"])],
             "names key '0000000000000000'")
