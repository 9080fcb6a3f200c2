"""A ``sitecustomize`` that makes ``import torch`` (and torchvision) fail, for processes that must
run without torch: put ``blocked_site(folder)`` first on the child's ``PYTHONPATH``."""

from __future__ import annotations

from pathlib import Path

BLOCKER = """
import importlib.abc, sys
class _NoTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "torchvision"):
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, _NoTorch())
"""


def blocked_site(folder: Path) -> Path:
    """``folder/site`` holding the blocking ``sitecustomize.py``."""
    site = folder / "site"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text(BLOCKER)
    return site
