"""``tests/requires.py``: a missing dependency skips a test on a developer's machine and fails it in CI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PROBE = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from requires import require, require_binary

mod = require("no_such_module_for_edgessl", reason="the probe module is not installed")

def test_never_runs():
    pass
"""
BINARY_PROBE = PROBE.replace('mod = require("no_such_module_for_edgessl", reason="the probe module is not installed")',
                             "")
BINARY_PROBE += """
def test_needs_a_program():
    require_binary("no-such-program-for-edgessl", reason="the probe program is not installed")
"""


def _pytest(tmp_path: Path, source: str, ci: bool) -> subprocess.CompletedProcess:
    test = tmp_path / "test_probe.py"
    test.write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", str(test)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("source", [PROBE, BINARY_PROBE], ids=["module", "program"])
def test_missing_dependency_skips_locally_and_fails_in_ci(tmp_path, source):
    local = _pytest(tmp_path, source, ci=False)
    assert local.returncode in (0, 5) and "skipped" in local.stdout and "probe" in local.stdout, local.stdout
    ci = _pytest(tmp_path, source, ci=True)
    assert ci.returncode in (1, 2) and "must run in CI" in ci.stdout, ci.stdout


def test_a_same_named_program_of_the_venv_does_not_shadow_the_systems(tmp_path, monkeypatch):
    import requires

    venv_bin, system_bin = tmp_path / "venv-bin", tmp_path / "system-bin"
    for folder in (venv_bin, system_bin):
        folder.mkdir()
        (folder / "edgessl-probe-tool").write_text("#!/bin/sh\n")
        (folder / "edgessl-probe-tool").chmod(0o755)
    monkeypatch.setattr(requires.sysconfig, "get_path", lambda name: str(venv_bin))
    monkeypatch.setenv("PATH", f"{venv_bin}{os.pathsep}{system_bin}")
    monkeypatch.setattr(sys, "base_prefix", "/not-this-prefix")  # inside a virtual environment
    assert requires.require_binary("edgessl-probe-tool") == str(system_bin / "edgessl-probe-tool")
    monkeypatch.setattr(sys, "base_prefix", sys.prefix)  # outside one the scripts folder is the system's own
    assert requires.require_binary("edgessl-probe-tool") == str(venv_bin / "edgessl-probe-tool")
