"""What a test needs, and CI that cannot skip it: ``require("rclpy")`` imports the module, or skips
the test (the module, when called at module level) with the reason on a developer's machine, but
FAILS it when the ``CI`` environment variable is set, so a broken wheel cannot turn the torch, ROS,
bag, DICOM or browser claims into green skips. ``require_binary`` does the same for a program.

TensorRT and GPU tests do not use these: no CI machine here has them, so they keep skipping.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from types import ModuleType

import pytest


def _missing(what: str, reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {what} is missing ({reason}): this test must run in CI", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def require(module: str, reason: str = "") -> ModuleType:
    """The imported ``module``; else skip (fail under ``CI``)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        _missing(f"module {module}", reason or f"{module} is not importable ({exc})")
        raise  # unreachable: skip and fail raise


def _system_path() -> str:
    """``PATH`` without a virtual environment's scripts folder: pip puts same-named Python programs
    there (pynetdicom's ``storescu``, ``echoscu``), which shadow dcmtk's once the venv is activated.
    Outside a venv that folder is the system's own (``/usr/bin``) and stays."""
    path = os.environ.get("PATH", "")
    if sys.prefix == sys.base_prefix:
        return path
    scripts = Path(sysconfig.get_path("scripts")).resolve()
    return os.pathsep.join(d for d in path.split(os.pathsep) if d and Path(d).resolve() != scripts)


def require_binary(*names: str, reason: str = "") -> str:
    """The path of the first of ``names`` on ``PATH``, outside this Python environment; else skip
    (fail under ``CI``)."""
    found = next((p for p in (shutil.which(n, path=_system_path()) for n in names) if p), None)
    if found is None:
        _missing(f"program {' or '.join(names)}", reason or f"{' / '.join(names)} is not installed")
    return found
