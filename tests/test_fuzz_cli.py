"""Every command of the CLI, fed malformed files of each kind it reads (hypothesis): YAML configs,
manifests, detector files, signatures, keys, audit lines and anchors, labels CSVs, images, DICOM,
bags, datasets.

The contract, through ``edgessl.cli.main``: nothing escapes (an exception is a test failure with its
traceback); exit status 2 comes with exactly one ``edgessl COMMAND: error: ...`` line; a command that
scores a source may instead exit 0 or 1 with the bad items as error records, and a command the
spoiled file does not concern (``sign`` and ``bundle verify`` check hashes, not what a detector
holds) may succeed. Examples are capped so the file runs in a few minutes (``deadline=None``,
``database=None``: see test_fuzz.py).
"""

from __future__ import annotations

import io
import json
import shutil
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from requires import require

require("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edgessl.cli import build_parser, main  # noqa: E402
from edgessl.cli.main import COMMANDS  # noqa: E402
from edgessl.edge_runtime.bundle import Bundle, seal  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.medical.audit_log import AuditLog, anchor_path  # noqa: E402
from runtime_bundle import make_bundle  # noqa: E402

FUZZ = settings(max_examples=15, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FEW = settings(FUZZ, max_examples=5)
RECORDS = (0, 1)  # a source's bad items became error records (1: none could be scored)

JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=True) | st.text(max_size=8),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3),
                    max_leaves=8)
DEEP = st.integers(1000, 3000).map(lambda n: ("[" * n + "]" * n).encode())
NOT_UTF8 = st.binary(min_size=1, max_size=60).map(lambda b: b"\xff\xfe" + b)
BYTES = st.binary(max_size=300) | NOT_UTF8 | DEEP | JSON.map(lambda v: json.dumps(v).encode())


def cli(argv: list[str]) -> tuple[int, str, str]:
    """Run ``edgessl ARGV`` in this process: exit status, standard output, standard error."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def holds(argv: list[str], allowed: tuple[int, ...] = ()) -> int:
    """``argv`` keeps the contract (module docstring): exit 2 with one error line, or one of ``allowed``."""
    code, _, err = cli(argv)
    name = " ".join(argv[:2]) if argv[0] in ("bundle", "audit") else argv[0]
    errors = [line for line in err.splitlines() if ": error: " in line]
    assert "Traceback" not in err, err
    if code == 2:
        assert len(errors) == 1 and errors[0].startswith(f"edgessl {name}: error: "), err
        assert errors[0].split(": error: ", 1)[1].strip(), err
    else:
        assert code in allowed, (code, err)
    return code


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A bundle, a key pair, a folder of images, an audit log with its key: the valid files the tests spoil."""
    d = tmp_path_factory.mktemp("fuzz_cli")
    make_bundle(d / "bundle", "knn")
    assert main(["keygen", "--out", str(d / "signer")]) == 0
    (d / "images").mkdir()
    ds = open_dataset("digits", "test")
    for i in range(2):
        cv2.imwrite(str(d / "images" / f"digit{i}.png"), ds.image(i))
    (d / "audit.key").write_bytes(bytes(range(32)))
    with AuditLog(d / "log" / "audit.jsonl", d / "audit.key") as log:
        for i in range(3):
            log.append({"file": f"s{i}.png", "decision": "normal"})
    return d


def _copy(src: Path, tmp: Path, name: str) -> Path:
    dst = tmp / name
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    return dst


# -- every command: a malformed --config --------------------------------------------------------

def _fails_fast(command: str, d: Path, tmp: Path) -> list[str]:
    """Arguments with which ``command`` stops at its first input (one line, exit 2) whatever the config."""
    missing = str(tmp / "missing")
    (tmp / "key-exists").write_text("x")
    return {
        "pretrain": ["--data", f"{missing}.npz", "--out", str(tmp / "run")],
        "finetune": ["--run", missing, "--out", str(tmp / "ft")],
        "fit": ["--run", missing],
        "evaluate": ["--run", missing],
        "export": ["--run", missing, "--out", str(tmp / "b")],
        "demo": ["--data", f"{missing}.npz", "--out", str(tmp / "demo")],
        "keygen": ["--out", str(tmp / "key-exists")],
        "sign": ["--bundle", missing, "--key", missing],
        "audit verify": ["--log", missing],
        "triage": ["--bundle", missing, "--source", missing, "--out", str(tmp / "t")],
        "operating-point": ["--bundle", missing, "--sensitivity", "0.9", "--normal-label", "0"],
        "run": ["--bundle", missing, "--source", missing],
        "adapt": ["--bundle", missing, "--data", missing],
        "replay": ["--bundle", missing, "--source", missing],
        "dicom-node": ["--bundle", missing, "--out", str(tmp / "node"), "--port", "0"],
    }.get(command, ["--bundle", missing])


def _option_keys(command: str) -> list[str]:
    parser = build_parser()[1][command]
    return sorted({s[2:] for a in parser._actions for s in a.option_strings if s.startswith("--")} - {"help"})


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
@FEW
@given(data=st.data())
def test_every_command_refuses_a_malformed_config_in_one_line(command, root, tmp_path, data):
    keys = _option_keys(command)
    config = data.draw(BYTES | st.dictionaries(st.sampled_from(keys), JSON, min_size=1, max_size=3)
                       .map(lambda v: yaml.safe_dump(v).encode()))
    path = tmp_path / "config.yaml"
    path.write_bytes(config)
    holds([*command.split(), "--config", str(path), *_fails_fast(command, root, tmp_path)])


# -- bundle files: manifest, detector, signature, keys ------------------------------------------------

BUNDLE_COMMANDS = {
    "run": lambda b, d, t: ["run", "--bundle", b, "--source", str(d / "images"), "--no-progress"],
    "bench": lambda b, d, t: ["bench", "--bundle", b, "--iterations", "1", "--warmup", "0", "--no-eager"],
    "evaluate": lambda b, d, t: ["evaluate", "--bundle", b, "--data", str(t / "missing.npz")],
    "triage": lambda b, d, t: ["triage", "--bundle", b, "--source", str(d / "images"), "--out", str(t / "triage"),
                               "--no-progress"],
    "operating-point": lambda b, d, t: ["operating-point", "--bundle", b, "--sensitivity", "0.9", "--normal-label",
                                        "0", "--data", str(t / "missing.npz")],
    "calibrate": lambda b, d, t: ["calibrate", "--bundle", b, "--data", str(t / "missing.npz")],
    "build-engine": lambda b, d, t: ["build-engine", "--bundle", b],
    "sign": lambda b, d, t: ["sign", "--bundle", b, "--key", str(d / "signer")],
    "bundle inspect": lambda b, d, t: ["bundle", "inspect", "--bundle", b],
    "bundle verify": lambda b, d, t: ["bundle", "verify", "--bundle", b, "--public-key", str(d / "signer.pub")],
    "bundle check": lambda b, d, t: ["bundle", "check", "--bundle", b],
    "replay": lambda b, d, t: ["replay", "--bundle", b, "--source", str(t / "missing-bag")],
    "adapt": lambda b, d, t: ["adapt", "--bundle", b, "--data", str(t / "missing")],
}

DETECTOR_JSON = st.one_of(
    JSON.map(lambda v: json.dumps(v).encode()),
    st.sampled_from([["knn"], {"format": "edgessl-detector", "version": 1, "kind": "knn", "params": {"k": "5"}},
                     {"format": "edgessl-detector", "version": 1, "kind": "knn", "params": {"k": 0}},
                     {"format": "edgessl-detector", "version": 1, "kind": "knn", "params": {"k": 100000}},
                     {"format": "edgessl-detector", "version": 1, "kind": "combined", "params": {"parts": [{}]}},
                     {"format": "edgessl-detector", "version": 1, "kind": "gaussian", "params": {}}])
    .map(lambda v: json.dumps(v).encode()),
    DEEP)


def _npz(arrays: dict) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


DETECTOR_NPZ = st.one_of(
    st.binary(max_size=300),
    st.just(b"PK\x03\x04" + bytes(60)),
    st.sampled_from([{"bank": np.zeros((0, 8), np.float32)}, {"bank": np.full((4, 8), np.nan, np.float32)},
                     {"bank": np.zeros((4,), np.float32)}, {"bank": np.array(["a", "b"])},
                     {"bank": np.array([{"x": 1}], dtype=object)}, {}]).map(_npz))


@st.composite
def spoiled_bundle_file(draw) -> tuple[str, bytes | dict, bool]:
    """(bundle path, its new bytes (or, for the manifest, edits of its sections), re-sealed?)."""
    which = draw(st.sampled_from(["manifest.json", "manifest sections", "detector/detector.json",
                                  "detector/detector.npz", "signature.json"]))
    if which == "manifest sections":
        section = draw(st.sampled_from(["thresholds", "detector", "preprocess", "precisions", "model", "files"]))
        return which, {section: draw(JSON)}, draw(st.booleans())
    content = {"detector/detector.json": DETECTOR_JSON, "detector/detector.npz": DETECTOR_NPZ}.get(which, BYTES)
    return which, draw(content), which.startswith("detector") and draw(st.booleans())


@pytest.mark.parametrize("command", list(BUNDLE_COMMANDS))
@FEW
@given(spoiled=spoiled_bundle_file())
def test_bundle_commands_refuse_malformed_bundle_files_in_one_line(command, root, tmp_path, spoiled):
    which, content, reseal = spoiled
    b = _copy(root / "bundle", tmp_path, "bundle")
    if which == "manifest sections":
        m = json.loads((b / "manifest.json").read_text())
        m.update(content)
        if reseal:
            seal(b, m)
        else:
            (b / "manifest.json").write_text(json.dumps(m))
    else:
        (b / which).write_bytes(content)
        if reseal:
            seal(b, Bundle.load(b, verify=False).manifest)
    holds(BUNDLE_COMMANDS[command](str(b), root, tmp_path), RECORDS if command in ("run", "triage") else (0,))


@pytest.fixture(scope="module")
def adapted(root) -> Path:
    """A bundle with an adaptation delta (two images added)."""
    b = make_bundle(root / "adapted", "knn", graph_scores=True, fit_record=True)
    assert main(["adapt", "--bundle", str(b), "--data", str(root / "images"), "--folds", "2", "--accept-flagged"]) == 0
    return b


@st.composite
def spoiled_delta_file(draw) -> tuple[str, bytes | dict, bool]:
    """(delta path, its new bytes (or, for the record, edits of its sections), re-sealed?)."""
    which = draw(st.sampled_from(["adapt/adapt.json", "record sections", "adapt/detector.json", "adapt/detector.npz",
                                  "adapt/signature.json"]))
    if which == "record sections":
        section = draw(st.sampled_from(["thresholds", "added", "banks", "files", "base_sha256", "format"]))
        return which, {section: draw(JSON)}, draw(st.booleans())
    content = {"adapt/detector.json": DETECTOR_JSON, "adapt/detector.npz": DETECTOR_NPZ}.get(which, BYTES)
    return which, draw(content), which.startswith("adapt/detector") and draw(st.booleans())


@pytest.mark.parametrize("command", ["run", "bundle inspect", "adapt"])
@FEW
@given(spoiled=spoiled_delta_file())
def test_bundle_commands_refuse_a_malformed_adaptation_delta_in_one_line(command, root, adapted, tmp_path, spoiled):
    """Someone who can write the bundle can re-seal the delta: it is still refused in one line, never a traceback."""
    import hashlib

    from edgessl.edge_runtime.bundle import seal_digest

    which, content, reseal = spoiled
    b = _copy(adapted, tmp_path, "bundle")
    path = b / "adapt" / "adapt.json"
    record = json.loads(path.read_text())
    if which == "record sections":
        record.update(content)
    else:
        (b / which).write_bytes(content)
        if reseal:
            record["files"][which] = hashlib.sha256(content).hexdigest()
    if reseal:
        record["seal"] = {"sha256": seal_digest(record)}
    if which != "adapt/adapt.json":
        path.write_text(json.dumps(record))
    argv = {"run": ["run", "--bundle", str(b), "--source", str(root / "images"), "--no-progress"],
            "bundle inspect": ["bundle", "inspect", "--bundle", str(b)],
            "adapt": ["adapt", "--bundle", str(b), "--data", str(tmp_path / "missing")]}[command]
    holds(argv, RECORDS if command == "run" else (0,))


@FEW
@given(key=BYTES)
def test_malformed_keys_are_refused_in_one_line(root, tmp_path, key):
    (tmp_path / "k").write_bytes(key)
    b = str(root / "bundle")
    holds(["bundle", "verify", "--bundle", b, "--public-key", str(tmp_path / "k")])
    holds(["sign", "--bundle", str(_copy(root / "bundle", tmp_path, "b")), "--key", str(tmp_path / "k")])
    holds(["triage", "--bundle", b, "--source", str(root / "images"), "--out", str(tmp_path / "t"),
           "--audit-key", str(tmp_path / "k"), "--no-progress"], allowed=(0,))  # any 16 bytes make an HMAC key


# -- audit lines and anchors ------------------------------------------------------------------------

@FUZZ
@given(line=BYTES | st.just(b'{"decision":"abnormal","decision":"normal","prev_sha256":null,"seq":1,"sha256":"x"}'),
       where=st.integers(0, 4), anchor=st.none() | BYTES)
def test_audit_verify_and_triage_refuse_malformed_lines_in_one_line(root, tmp_path, line, where, anchor):
    log = _copy(root / "log", tmp_path, "log") / "audit.jsonl"
    lines = log.read_bytes().splitlines()
    lines.insert(min(where, len(lines)), line.replace(b"\n", b" "))
    log.write_bytes(b"\n".join(lines) + b"\n")
    if anchor is not None:
        anchor_path(log).write_bytes(anchor)
    key = str(root / "audit.key")
    holds(["audit", "verify", "--log", str(log), "--audit-key", key])
    # an append checks the tail against the anchor (not every line): a log spoiled above its tail is
    # extended, and stays refused by `audit verify`
    holds(["triage", "--bundle", str(root / "bundle"), "--source", str(root / "images"), "--out", str(log.parent),
           "--audit-key", key, "--no-progress"], allowed=(0,))


# -- labels CSV -------------------------------------------------------------------------------------

LABELS = st.one_of(BYTES, st.lists(st.lists(st.text(max_size=6), max_size=3), max_size=4).map(
    lambda rows: ("file,label\n" + "\n".join(",".join(r) for r in rows)).encode()))


@FUZZ
@given(labels=LABELS)
def test_triage_and_operating_point_refuse_malformed_labels_in_one_line(root, tmp_path, labels):
    csv = tmp_path / "labels.csv"
    csv.write_bytes(labels)
    b = str(root / "bundle")
    holds(["triage", "--bundle", b, "--source", str(root / "images"), "--out", str(tmp_path / "t"), "--labels",
           str(csv), "--normal-label", "0", "--no-progress"], allowed=RECORDS)
    holds(["operating-point", "--bundle", str(_copy(root / "bundle", tmp_path, "b")), "--source",
           str(root / "images"), "--labels", str(csv), "--sensitivity", "0.9", "--normal-label", "0"])


# -- images, DICOM, bags, datasets --------------------------------------------------------------------

@FEW
@given(blobs=st.lists(BYTES, min_size=1, max_size=3), suffix=st.sampled_from([".png", ".jpg", ".dcm", ".npz"]))
def test_sources_of_malformed_files_give_error_records_or_one_line(root, tmp_path, blobs, suffix):
    folder = tmp_path / "inputs"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for i, blob in enumerate(blobs):
        (folder / f"bad{i}{suffix}").write_bytes(blob)
    b = str(root / "bundle")
    holds(["triage", "--bundle", b, "--source", str(folder), "--out", str(tmp_path / "t"), "--no-progress"],
          allowed=RECORDS)
    holds(["run", "--bundle", b, "--source", str(folder / f"bad0{suffix}"), "--no-progress"], allowed=RECORDS)


@FEW
@given(blob=st.binary(max_size=300) | NOT_UTF8 | st.integers(200, 2000).map(lambda n: ("[" * n).encode()),
       as_folder=st.booleans())
def test_replay_refuses_a_malformed_bag_in_one_line(root, tmp_path, blob, as_folder):
    require("rosbags")
    bag = tmp_path / ("bag" if as_folder else "bag.mcap")
    shutil.rmtree(bag, ignore_errors=True)
    if as_folder:
        bag.mkdir()
        (bag / "metadata.yaml").write_bytes(blob)
        (bag / "bag_0.mcap").write_bytes(blob)
    else:
        bag.write_bytes(blob)
    holds(["replay", "--bundle", str(root / "bundle"), "--source", str(bag), "--no-progress"], allowed=RECORDS)


@FEW
@given(blob=BYTES, kind=st.sampled_from(["data.npz", "list.csv", "images/x.png"]))
def test_training_commands_refuse_malformed_data_in_one_line(tmp_path, blob, kind):
    require("torch")
    path = tmp_path / kind
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    data = str(path.parent if kind.startswith("images") else path)
    holds(["pretrain", "--data", data, "--out", str(tmp_path / "run"), "--backbone", "mobilenet_v3_small",
           "--image-size", "16", "--device", "cpu", "--batch-size", "2", "--max-steps", "1"])
