"""The reference in docs/ stays true to the commands: every command's option table in docs/*.md is
the one its parser gives (regenerate them with ``python tests/test_docs.py --write``), every
page the README links to exists, and every test a page names as holding a promise exists."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from edgessl.cli import build_parser
from edgessl.cli.main import COMMANDS
from edgessl.cli.options import config_field, field_default

ROOT = Path(__file__).resolve().parents[1]
TABLE = re.compile(r"`edgessl (?P<name>[a-z -]+)` options:\n\n\| option \| default \| meaning \|\n\|---\|---\|---\|\n"
                   r"(?:\|.*\|\n)*")


def _cell(default, required: bool) -> str:
    if required:
        return "required"
    if isinstance(default, bool):
        return "on" if default else "off"
    if default in (None, "", []):
        return "-"
    return f"`{' '.join(map(str, default)) if isinstance(default, list) else default}`"


def _escaped(cell: str) -> str:
    """A table cell with its ``|`` escaped (GitHub's tables split on it, inside code spans too)."""
    return cell.replace("|", "\\|")


def option_table(name: str) -> str:
    """The markdown table of command ``name``'s options: flag and metavar, default, meaning."""
    command = next(c for c in COMMANDS if c.name == name)
    parser = build_parser()[1][name]
    formatter = parser._get_formatter()
    actions = {a.dest: a for a in parser._actions}
    rows = [f"`edgessl {name}` options:", "", "| option | default | meaning |", "|---|---|---|"]
    for opt in sorted(command.options, key=lambda o: not o.required):
        action = actions[opt.field]
        shown = opt.flag if action.nargs == 0 else f"{opt.flag} {formatter._format_args(action, opt.field.upper())}"
        default = field_default(config_field((opt.of,) if opt.of else command.configs, opt.field)[0])
        rows.append("| " + " | ".join(_escaped(c) for c in (f"`{shown}`", _cell(default, opt.required), opt.help)) + " |")
    return "\n".join(rows) + "\n"


def _pages() -> dict[Path, str]:
    return {p: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}


def test_every_command_has_its_option_table_and_it_is_current():
    tables = {m["name"]: m.group(0) for text in _pages().values() for m in TABLE.finditer(text)}
    assert sorted(tables) == sorted(c.name for c in COMMANDS), "a command without a table, or a stale one"
    stale = [name for name, table in tables.items() if table != option_table(name)]
    assert not stale, f"stale option tables (python tests/test_docs.py --write): {stale}"


def test_the_readme_links_resolve():
    readme = (ROOT / "README.md").read_text()
    links = set(re.findall(r"\]\(((?:docs/)[^)#]+)", readme))
    assert links, "the README links the reference pages"
    assert not [link for link in links if not (ROOT / link).is_file()]


def test_every_test_the_docs_name_exists():
    named = {m for text in _pages().values() for m in re.findall(r"`(test_\w+\.py)(?:::(test_\w+))?`", text)}
    assert len(named) >= 20, "docs/trust.md names the test of each promise"
    missing = [f"{f}::{name}" if name else f for f, name in named
               if not (ROOT / "tests" / f).is_file() or (name and f"def {name}(" not in (ROOT / "tests" / f).read_text())]
    assert not missing, f"the docs name tests that do not exist: {missing}"


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    for page, text in _pages().items():
        new = TABLE.sub(lambda m: option_table(m["name"]), text)
        if new != text:
            page.write_text(new)
            print(f"rewrote the option tables of {page.relative_to(ROOT)}")
