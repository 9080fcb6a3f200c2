"""The check every bad-input test makes of the command line: exit 2, one line, naming the fix."""

from __future__ import annotations

from edgessl.cli import main


def refused(capsys, argv: list[str], *fragments: str) -> str:
    """``argv`` exits 2 with one line on stderr containing every fragment; that line."""
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for f in fragments:
        assert f in err[0], err[0]
    return err[0]
