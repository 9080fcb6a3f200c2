"""The import direction the layout promises, read from every module's imports (function-local too):

* the runtime core (``edge_runtime``'s own modules, ``backends/``, ``detectors/``) imports none of
  the rooms built on it; ``data/`` and ``streams/`` import none of the applications (``ros/``,
  ``medical/``);
* no stage imports a later one (train -> export -> calibration -> edge_runtime), and the runtime
  imports no other stage and nothing else of ``edgessl``;
* nothing of the package but the command line (``edgessl/cli/``, ``python -m edgessl``) imports it;
* no stage imports the ROS node (its tests and benchmarks do);
* no two modules of the package import each other, directly or through others (no cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("train", "export", "calibration")  # in pipeline order; each may import edge_runtime
APPLICATIONS = ("ros", "medical")
CLI = "edgessl.cli"
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
        if folder == "edge_runtime" and (top in ("torch", "torchvision") or imp.startswith("edgessl.")
                                         and stage not in ("edge_runtime", "__version__")):
            bad.append(where + " (the runtime imports no other stage, nothing else of edgessl, and no torch)")
        if (imp == CLI or imp.startswith(CLI + ".")) and me and not me.startswith(CLI) and me != "edgessl.__main__":
            bad.append(where + " (nothing but the CLI imports edgessl.cli)")
        mine, theirs = _room(me), _room(imp)
        if mine is None or theirs is None or mine == theirs:
            continue
        if mine == "core" and theirs in ROOMS:
            bad.append(where + " (the core imports no room built on it)")
        elif mine in ("data", "streams") and theirs in APPLICATIONS:
            bad.append(where + " (data/ and streams/ import no application)")
    return bad


def import_cycles(sources: dict[Path, str]) -> list[list[str]]:
    """The groups of two or more modules (of ``sources``: path -> source text) that import each
    other, directly or through others: the graph's strongly connected components (Tarjan)."""
    names = {_module_name(path): path for path in sources}
    graph = {m: sorted(i for i in imports(path, sources[path]) if i in names and i != m) for m, path in names.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = stack[stack.index(v):]
            del stack[stack.index(v):]
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def test_import_direction():
    folders = (*STAGES, "edge_runtime", "edgessl", "benchmarks", "tests")
    assert [v for folder in folders for p in _sources(folder) for v in violations(p, p.read_text())] == []


@pytest.mark.parametrize("where, source, rule", [
    ("edge_runtime/pipeline.py", "from .streams.sources import open_source", "the core imports no room"),
    ("edge_runtime/streams/runner.py", "from ..medical import triage", "import no application"),
    ("edge_runtime/medical/triage.py", "from edgessl.cli.run import load_pipeline", "nothing else of edgessl"),
    ("train/fit.py", "def f():\n    from edgessl.cli.options import Opt", "nothing but the CLI"),
    ("export/verify.py", "from edgessl.calibration.gate import run_gate", "a later stage"),
    ("edge_runtime/images.py", "import torch", "no torch"),
    ("train/fit.py", "def f():\n    import edgessl_ros.node", "nothing imports the ROS node"),
])
def test_import_direction_catches(where, source, rule):
    """Each kind of break is seen (so the test above can fail)."""
    found = violations(ROOT / where, source)
    assert found and rule in found[0]


def test_no_import_cycle():
    sources = {p: p.read_text() for folder in (*STAGES, "edge_runtime", "edgessl") for p in _sources(folder)}
    assert import_cycles(sources) == []


def test_import_cycles_are_seen():
    """A cycle through a function-level import, and one through a third module, are both found."""
    a, b, c = (ROOT / "edge_runtime" / "data" / f"{n}.py" for n in "abc")
    assert import_cycles({a: "from . import b", b: "def f():\n    from .a import x"}) == [
        ["edgessl.edge_runtime.data.a", "edgessl.edge_runtime.data.b"]]
    assert len(import_cycles({a: "from .b import y", b: "from .c import z", c: "from .a import x"})[0]) == 3
    assert import_cycles({a: "from .b import y", b: "import numpy"}) == []
