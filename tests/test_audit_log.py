"""The audit log: every edit, removal, reordering and truncation is caught at the first affected line;
HMAC lines catch a whole rewrite; two processes appending at once lose and corrupt nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgessl.cli import main
from edgessl.edge_runtime.bundle import canonical_json
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.medical.audit_log import AuditLog, anchor_path, read_audit_log, verify_audit_log

N = 5
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def key(tmp_path):
    p = tmp_path / "audit.key"
    p.write_bytes(bytes(range(32)))
    return p


def _log(path: Path, n: int = N, key=None) -> Path:
    with AuditLog(path, key) as log:
        for i in range(1, n + 1):
            log.append({"study": f"s{i}", "score": i / 10})
    return path


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _put(path: Path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _rehash(entry: dict) -> bytes:
    """What a careless forger does: edit, then recompute the line's own sha256."""
    body = {k: v for k, v in entry.items() if k not in ("sha256", "hmac")}
    return canonical_json({**body, "sha256": hashlib.sha256(canonical_json(body)).hexdigest()})


def _fails_at(path: Path, line: int, key=None) -> str:
    with pytest.raises(EdgesslError) as info:
        verify_audit_log(path, key)
    assert f"line {line} " in str(info.value), str(info.value)
    return str(info.value)


def test_a_clean_log_verifies_and_appends_across_runs(tmp_path):
    path = _log(tmp_path / "audit.jsonl")
    first = path.read_bytes()
    _log(path, 2)
    assert path.read_bytes().startswith(first) and verify_audit_log(path) == N + 2
    assert [e["seq"] for e in read_audit_log(path)] == list(range(1, N + 3))
    assert json.loads(anchor_path(path).read_text())["count"] == N + 2


@pytest.mark.parametrize("line", range(1, N + 1))
def test_an_edit_of_any_line_is_named(tmp_path, line):
    path = _log(tmp_path / "audit.jsonl")
    lines = _lines(path)
    lines[line - 1] = lines[line - 1].replace(b'"score":', b'"score":9')
    _put(path, lines)
    assert "was edited" in _fails_at(path, line)


@pytest.mark.parametrize("line", range(1, N + 1))
def test_an_edit_with_its_hash_recomputed_is_named(tmp_path, line):
    path = _log(tmp_path / "audit.jsonl")
    lines = _lines(path)
    entry = json.loads(lines[line - 1])
    lines[line - 1] = _rehash({**entry, "score": 99.0})
    _put(path, lines)
    assert "was changed" in _fails_at(path, line)  # by the next line's chain, or the anchor for the last


def test_a_removed_line_is_named(tmp_path):
    path = _log(tmp_path / "audit.jsonl")
    lines = _lines(path)
    _put(path, lines[:2] + lines[3:])
    assert "removed, inserted or reordered" in _fails_at(path, 3)


def test_a_reordering_is_named(tmp_path):
    path = _log(tmp_path / "audit.jsonl")
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    _put(path, lines)
    _fails_at(path, 2)


def test_a_truncated_tail_is_named(tmp_path):
    path = _log(tmp_path / "audit.jsonl")
    lines = _lines(path)
    _put(path, lines[:3])  # whole lines cut
    assert "truncated" in _fails_at(path, 4)
    path.write_bytes(b"\n".join(lines)[:-20])  # cut mid-line
    assert "incomplete" in _fails_at(path, N)
    path.write_bytes(b"")
    assert "truncated" in _fails_at(path, 1)


def test_a_removed_anchor_is_refused(tmp_path):
    path = _log(tmp_path / "audit.jsonl")
    anchor_path(path).unlink()
    with pytest.raises(EdgesslError, match="no anchor"):
        verify_audit_log(path)
    with pytest.raises(EdgesslError, match="no anchor"):
        _log(path, 1)


def test_a_tampered_log_is_never_extended(tmp_path):
    path = _log(tmp_path / "audit.jsonl")
    lines = _lines(path)
    _put(path, lines[:3])
    before = path.read_bytes()
    with pytest.raises(EdgesslError, match="does not match its anchor"):
        _log(path, 1)
    assert path.read_bytes() == before


def test_hmac_catches_a_whole_rewrite(tmp_path, key):
    path = _log(tmp_path / "audit.jsonl", key=key)
    assert verify_audit_log(path, key) == N
    forged = tmp_path / "forged.jsonl"  # rewritten from scratch, chain and anchor recomputed, no key
    _log(forged, N)
    entries = [{k: v for k, v in e.items() if k not in ("sha256", "hmac", "seq", "prev_sha256")}
               for e in read_audit_log(path)]
    with AuditLog(forged) as log:
        log.append(entries[0])
    assert verify_audit_log(forged) == N + 1  # without the key it is a consistent log
    with pytest.raises(EdgesslError, match="without an audit key"):
        verify_audit_log(forged, key)
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"w" * 32)
    with pytest.raises(EdgesslError, match="HMAC does not verify"):
        verify_audit_log(path, wrong)
    lines = _lines(path)  # a forger who keeps the HMAC fields but changes a line and its sha256
    lines[2] = _rehash({**json.loads(lines[2]), "score": 99.0})[:-1] + b',"hmac":"00"}'
    _put(path, lines)
    assert "HMAC that does not verify" in _fails_at(path, 3, key)


def test_keyed_and_unkeyed_appends_do_not_mix(tmp_path, key):
    path = _log(tmp_path / "audit.jsonl", key=key)
    with pytest.raises(EdgesslError, match="pass its --audit-key"):
        _log(path, 1)
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    with pytest.raises(EdgesslError, match="at least 16"):
        _log(tmp_path / "other.jsonl", 1, short)


def test_a_partial_line_is_closed_and_named(tmp_path):
    path = _log(tmp_path / "audit.jsonl", 2)
    with open(path, "ab") as f:
        f.write(b'{"study":"s3","tru')  # a crash mid-write
    _log(path, 1)
    assert b'"tru\n{' in path.read_bytes()
    assert "not an audit entry" in _fails_at(path, 3)


def test_a_crash_between_line_and_anchor_is_completed_by_the_next_append(tmp_path):
    path = _log(tmp_path / "audit.jsonl", 3)
    stale = anchor_path(path).read_bytes()
    _log(path, 1)
    anchor_path(path).write_bytes(stale)  # the line reached the disk, the anchor did not
    _log(path, 1)
    assert verify_audit_log(path) == 5


def test_cli_audit_verify(tmp_path, key, capsys):
    path = _log(tmp_path / "audit.jsonl", key=key)
    assert main(["audit", "verify", "--log", str(path), "--audit-key", str(key)]) == 0
    assert "HMACs verified" in capsys.readouterr().out
    assert main(["audit", "verify", "--log", str(path)]) == 0
    assert "NOT checked" in capsys.readouterr().out
    lines = _lines(path)
    _put(path, lines[:-1])
    assert main(["audit", "verify", "--log", str(path), "--audit-key", str(key)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 5 is missing" in err[0]


APPENDER = """
import sys, time
from pathlib import Path
from edgessl.edge_runtime.medical.audit_log import AuditLog
path, who, n, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
Path(path + ".ready-" + who).touch()
while not Path(path + ".go").exists():  # start together
    time.sleep(0.005)
other = "b" if who == "a" else "a"
with AuditLog(path, key) as log:
    for i in range(n):
        log.append({"writer": who, "i": i, "pad": "x" * (i % 97)})
        if i == 0:  # both have written a line before either goes on: the lines interleave at least twice
            Path(path + ".started-" + who).touch()
            while not Path(path + ".started-" + other).exists():
                time.sleep(0.001)
"""


def test_two_processes_appending_lose_and_corrupt_nothing(tmp_path, key):
    path = tmp_path / "audit.jsonl"
    n = 300
    procs = [subprocess.Popen([sys.executable, "-c", APPENDER, str(path), who, str(n), str(key)], cwd=REPO)
             for who in ("a", "b")]
    while not all(Path(f"{path}.ready-{who}").exists() for who in ("a", "b")):
        assert all(p.poll() is None for p in procs)
    Path(f"{path}.go").touch()
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert verify_audit_log(path, key) == 2 * n
    entries = read_audit_log(path)
    for who in ("a", "b"):
        assert [e["i"] for e in entries if e["writer"] == who] == list(range(n))  # every line, in order
    writers = [e["writer"] for e in entries]
    assert sum(a != b for a, b in zip(writers, writers[1:])) > 1  # they really ran at the same time


def test_two_triage_processes_share_one_log(tmp_path, key):
    import cv2

    from edgessl.edge_runtime.data.datasets import open_dataset
    from runtime_bundle import make_bundle

    bundle = make_bundle(tmp_path / "bundle", "knn")
    images = tmp_path / "studies"
    images.mkdir()
    ds = open_dataset("digits", "test")
    for i in range(40):
        cv2.imwrite(str(images / f"study{i:02d}.png"), ds.image(i))
    out = tmp_path / "triage"
    argv = ["-m", "edgessl", "triage", "--bundle", str(bundle), "--source", str(images), "--out", str(out),
            "--audit-key", str(key), "--operating-point", "none"]
    procs = [subprocess.Popen([sys.executable, *argv], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [r[1][-500:] for r in results]
    log = out / "audit.jsonl"
    assert verify_audit_log(log, key) == 80
    entries = read_audit_log(log)
    runs = {e["run_id"] for e in entries}
    assert len(runs) == 2
    for run in runs:
        assert sorted(Path(e["file"]).name for e in entries if e["run_id"] == run) == sorted(
            p.name for p in images.iterdir())
