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
