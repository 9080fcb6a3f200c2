"""The reference in docs/ stays true to the commands: every option of every command is documented
on some page, and every page the README links to exists."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from edgessl.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _docs() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def test_every_option_of_every_command_is_documented():
    text = _docs()
    missing = []
    for name, parser in build_parser()[1].items():
        if f"edgessl {name}" not in text:
            missing.append(f"edgessl {name}")
        for action in parser._actions:
            if action.help == argparse.SUPPRESS or not action.option_strings or action.dest in ("help",):
                continue
            flag = action.option_strings[0]
            if f"`{flag}" not in text:
                missing.append(f"{name} {flag}")
    assert not missing, f"not in docs/*.md: {missing}"


def test_the_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\(((?:docs/)[^)#]+)", readme))
    assert links, "the README links the reference pages"
    assert not [link for link in links if not (ROOT / link).is_file()]
