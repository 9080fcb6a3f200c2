"""The import direction the layout promises, read from every module's imports (function-local too):

* the runtime core (``edge_runtime``'s own modules, ``backends/``, ``detectors/``) imports none of
  the rooms built on it; ``data/`` and ``streams/`` import none of the applications (``ros/``,
  ``medical/``, ``commands/``); no application imports ``commands/``;
* no stage imports a later one (train -> export -> calibration -> edge_runtime), and the runtime
  imports no other stage;
* no stage imports the ROS node (its tests and benchmarks do).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "export", "calibration")  # in pipeline order; each may import edge_runtime
APPLICATIONS = ("ros", "medical", "commands")
ROOMS = ("data", "streams", *APPLICATIONS)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    if parts[0] == "ros2_node":
        return ".".join(parts[1:])
    return ".".join(["edgessl", *parts[1:]] if parts[0] == "edgessl" else ["edgessl", *parts])


def imports(path: Path, text: str) -> set[str]:
    """Absolute names of every module the source ``text`` of ``path`` imports, relative imports resolved."""
    name = _module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)  # `from . import x` names a module
    return found


def _sources(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def _room(module: str) -> str | None:
    parts = module.split(".")
    if parts[:2] != ["edgessl", "edge_runtime"]:
        return None
    return parts[2] if len(parts) > 2 and parts[2] in ROOMS else "core"


def violations(path: Path, text: str) -> list[str]:
    """The rules above that the module at ``path`` with source ``text`` breaks."""
    folder = path.relative_to(ROOT).parts[0]
    me = _module_name(path) if folder in (*STAGES, "edge_runtime", "edgessl") else ""
    bad = []
    for imp in imports(path, text):
        where = f"{path.relative_to(ROOT)} imports {imp}"
        top, stage = imp.split(".")[0], (imp.split(".") + [""])[1] if imp.startswith("edgessl.") else None
        if top == "edgessl_ros" and folder in (*STAGES, "edge_runtime", "edgessl"):
            bad.append(where + " (nothing imports the ROS node)")
        if folder in STAGES and stage in STAGES and STAGES.index(stage) > STAGES.index(folder):
            bad.append(where + " (a later stage)")
        if folder == "edge_runtime" and (stage in STAGES or top in ("torch", "torchvision")):
            bad.append(where + " (the runtime imports no other stage and no torch)")
        mine, theirs = _room(me), _room(imp)
        if mine is None or theirs is None or mine == theirs:
            continue
        if mine == "core" and theirs in ROOMS:
            bad.append(where + " (the core imports no room built on it)")
        elif mine in ("data", "streams") and theirs in APPLICATIONS:
            bad.append(where + " (data/ and streams/ import no application)")
        elif mine in APPLICATIONS and theirs == "commands":
            bad.append(where + " (only the CLI imports commands/)")
    return bad


def test_import_direction():
    folders = (*STAGES, "edge_runtime", "edgessl", "benchmarks", "tests")
    assert [v for folder in folders for p in _sources(folder) for v in violations(p, p.read_text())] == []


@pytest.mark.parametrize("where, source, rule", [
    ("edge_runtime/pipeline.py", "from .streams.sources import open_source", "the core imports no room"),
    ("edge_runtime/streams/runner.py", "from ..medical import triage", "import no application"),
    ("edge_runtime/medical/triage.py", "from ..commands.run import load_pipeline", "only the CLI"),
    ("export/verify.py", "from edgessl.calibration.gate import run_gate", "a later stage"),
    ("edge_runtime/images.py", "import torch", "no torch"),
    ("train/fit.py", "def f():\n    import edgessl_ros.node", "nothing imports the ROS node"),
])
def test_import_direction_catches(where, source, rule):
    """Each kind of break is seen (so the test above can fail)."""
    found = violations(ROOT / where, source)
    assert found and rule in found[0]
