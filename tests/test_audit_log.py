"""The audit log: every edit, removal, reordering and truncation is caught at the first affected line;
HMAC lines catch a whole rewrite; two processes appending at once lose and corrupt nothing."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgessl.cli import main
from edgessl.edge_runtime.jsonio import canonical_json
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
    lines[2] = canonical_json({**json.loads(_rehash({**json.loads(lines[2]), "score": 99.0})), "hmac": "00"})
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


def test_nothing_appended_from_outside_is_adopted(tmp_path, key):
    path = _log(tmp_path / "audit.jsonl", 2, key)
    before = path.read_bytes()
    with open(path, "ab") as f:
        f.write(b'{"study":"s3","tru')  # a partial line no edgessl append announced
    assert "incomplete" in _fails_at(path, 3, key)
    with pytest.raises(EdgesslError, match="does not match its anchor"):
        _log(path, 1, key)
    entries = read_audit_log(path)  # a whole, chained line (HMAC and all, the forger has the key here)
    forged = {k: v for k, v in entries[-1].items() if k not in ("sha256", "hmac")}
    from edgessl.edge_runtime.medical.audit_log import _seal_record, read_key
    line = canonical_json(_seal_record({**forged, "seq": 3, "prev_sha256": entries[-1]["sha256"]}, read_key(key)))
    path.write_bytes(before + line + b"\n")
    for _ in range(2):  # neither verify nor the next runs adopt it (the old "lagging anchor" recovery did)
        assert "appended outside edgessl" in _fails_at(path, 3, key)
        with pytest.raises(EdgesslError, match="does not match its anchor"):
            _log(path, 1, key)


def test_duplicate_keys_and_reordered_keys_are_edits(tmp_path, key):
    path = _log(tmp_path / "audit.jsonl", 3, key)
    lines = _lines(path)
    entry = json.loads(lines[1])
    assert lines[1].startswith(b'{"hmac"')
    lines[1] = lines[1][:-1] + b',"study":"forged"}'  # a reader sees "forged"; the parsed first value hashes
    _put(path, lines)
    assert "appears twice" in _fails_at(path, 2, key)
    lines[1] = json.dumps(entry).encode()  # the same content, keys in another order
    _put(path, lines)
    assert "not the canonical JSON" in _fails_at(path, 2, key)


def test_an_emptied_log_never_verifies_and_is_never_restarted(tmp_path, key, capsys):
    path = _log(tmp_path / "audit.jsonl", 3, key)
    path.write_bytes(b"")
    anchor_path(path).unlink()
    capsys.readouterr()
    assert main(["audit", "verify", "--log", str(path), "--audit-key", str(key)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the log is empty and has no anchor" in err[0]
    with pytest.raises(EdgesslError, match="the log is empty"):
        _log(path, 1, key)  # the next run does not start a fresh chain in it
    path.unlink()
    with pytest.raises(EdgesslError, match="not found"):
        verify_audit_log(path, key)


class Killed(BaseException):
    """A process killed at this point (nothing after it runs)."""


def _crash(monkeypatch, where: str):
    """Make the next append stop dead ``where``: before its line is written, mid-line, or after the
    line but before the anchor records it."""
    import edgessl.edge_runtime.medical.audit_log as audit_log

    if where == "after the line":
        real, calls = audit_log._write_anchor, []

        def anchor_then_die(*args):
            calls.append(1)
            if len(calls) == 2:
                raise Killed
            real(*args)
        monkeypatch.setattr(audit_log, "_write_anchor", anchor_then_die)
        return

    def write_then_die(self, data):
        if where == "mid-line":
            self._f.write(data[: len(data) // 2])
        raise Killed
    monkeypatch.setattr(audit_log.AuditLog, "_write_bytes", write_then_die)


@pytest.mark.parametrize("where", ["before the line", "mid-line", "after the line"])
def test_a_crash_mid_append_is_torn_and_repaired_by_the_next_append_with_an_audit_line(tmp_path, key, where,
                                                                                        monkeypatch):
    path = _log(tmp_path / "audit.jsonl", 2, key)
    with monkeypatch.context() as m, pytest.raises(Killed):
        _crash(m, where)
        _log(path, 1, key)
    torn = _fails_at(path, 3, key)
    assert "torn at line 3 (crash)" in torn and "repairs it" in torn
    _log(path, 1, key)
    entries = read_audit_log(path)
    recovery = [e for e in entries if e.get("event") == "crash recovery"]
    assert len(recovery) == 1 and verify_audit_log(path, key) == len(entries)
    assert [e["seq"] for e in entries] == list(range(1, len(entries) + 1))
    if where == "mid-line":  # the torn bytes are kept, closed, skipped and named by hash
        assert recovery[0]["torn_line"] == 3 and len(_lines(path)) == len(entries) + 1
    else:
        assert ("written" in recovery[0]["crash"]) and len(_lines(path)) == len(entries)


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


@pytest.fixture(scope="module")
def triage_inputs(tmp_path_factory):
    """A bundle and a folder of 6 studies (digits as PNG)."""
    import cv2

    from edgessl.edge_runtime.data.datasets import open_dataset
    from runtime_bundle import make_bundle

    root = tmp_path_factory.mktemp("triage_inputs")
    images = root / "studies"
    images.mkdir()
    ds = open_dataset("digits", "test")
    for i in range(6):
        cv2.imwrite(str(images / f"study{i}.png"), ds.image(i))
    return make_bundle(root / "bundle", "knn"), images


def _triage_argv(triage_inputs, out: Path, key: Path) -> list[str]:
    bundle, images = triage_inputs
    return ["triage", "--bundle", str(bundle), "--source", str(images), "--out", str(out), "--audit-key", str(key),
            "--operating-point", "none", "--batch-size", "1", "--no-progress"]


KILLED_TRIAGE = """
import sys, time
import edgessl.edge_runtime.medical.audit_log as audit_log
from edgessl.cli import main

where, calls = sys.argv[1], []
real_anchor, real_write = audit_log._write_anchor, audit_log.AuditLog._write_bytes

def stop_here():
    print("stopped", flush=True)
    time.sleep(120)  # killed here

def anchor(path, record, key):
    calls.append(1)  # two per append: the announcement, then the record
    if where == "after the line" and len(calls) == 6:
        stop_here()
    real_anchor(path, record, key)
    if where == "before the line" and len(calls) == 5:
        stop_here()

def write_bytes(self, data):
    if where == "mid-line" and len(calls) == 5:
        self._f.write(data[: len(data) // 2])
        stop_here()
    real_write(self, data)

audit_log._write_anchor, audit_log.AuditLog._write_bytes = anchor, write_bytes
main(sys.argv[2:])
"""


@pytest.mark.parametrize("where", ["before the line", "mid-line", "after the line"])
def test_a_triage_killed_mid_append_leaves_a_torn_tail_the_next_run_repairs(triage_inputs, tmp_path, key, where,
                                                                           capsys):
    out = tmp_path / "triage"
    argv = _triage_argv(triage_inputs, out, key)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_TRIAGE, where, *argv], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline().strip() == "stopped"  # inside the third study's append
    proc.kill()  # SIGKILL: nothing more runs
    proc.wait(timeout=30)
    log = out / "audit.jsonl"
    capsys.readouterr()
    assert main(["audit", "verify", "--log", str(log), "--audit-key", str(key)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torn at line 3 (crash)" in err[0], err
    assert main(argv) == 0  # the next run repairs it
    assert main(["audit", "verify", "--log", str(log), "--audit-key", str(key), "--against",
                 str(out / "worklist.csv"), str(out / "report.html")]) == 0
    entries = read_audit_log(log)
    recovery = [e for e in entries if e.get("event") == "crash recovery"]
    assert len(recovery) == 1 and recovery[0]["seq"] == (4 if where == "after the line" else 3)
    assert sum("file" in e for e in entries) == (3 if where == "after the line" else 2) + 6


def test_a_worklist_and_report_show_a_log_deleted_with_its_anchor(triage_inputs, tmp_path, key, capsys):
    out = tmp_path / "triage"
    assert main(_triage_argv(triage_inputs, out, key)) == 0
    kept = tmp_path / "kept"
    kept.mkdir()
    for name in ("worklist.csv", "report.html"):
        shutil.copy(out / name, kept / name)
    log = out / "audit.jsonl"
    verify = ["audit", "verify", "--log", str(log), "--audit-key", str(key), "--against"]
    assert main([*verify, str(kept / "worklist.csv"), str(kept / "report.html")]) == 0
    assert "its 6 studies are in the log" in capsys.readouterr().out
    log.unlink()
    anchor_path(log).unlink()
    assert main(_triage_argv(triage_inputs, out, key)) == 0  # a fresh chain: on its own it verifies
    assert main(verify[:-1]) == 0
    assert "cannot show here" in capsys.readouterr().out  # and says what it cannot prove
    for name in ("worklist.csv", "report.html"):
        capsys.readouterr()
        assert main([*verify, str(kept / name)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "the log was replaced or rewritten" in err[0], err
    rows = (out / "worklist.csv").read_text().splitlines()
    rows[1] = rows[1].replace(",normal,", ",abnormal,") if ",normal," in rows[1] else rows[1].replace(",abnormal,",
                                                                                                    ",normal,")
    (out / "worklist.csv").write_text("\n".join(rows) + "\n")
    capsys.readouterr()
    assert main([*verify, str(out / "worklist.csv")]) == 2
    assert "edited after the run" in capsys.readouterr().err
