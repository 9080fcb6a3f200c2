"""The ``edgessl`` command: one entry point, a subcommand per pipeline step.

Each stage registers its own subcommands (``register(subparsers)`` in its ``commands.py``); a
handler imports its heavy modules only when it runs, so ``edgessl run`` never imports torch.
Every subcommand takes ``--config FILE.yaml`` whose keys are the long option names; options given
on the command line win over the file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from edgessl import __version__
from edgessl.edge_runtime.errors import EdgesslError

COMMAND_MODULES = (
    "edgessl.train.commands",
    "edgessl.export.commands",
    "edgessl.calibration.commands",
    "edgessl.edge_runtime.commands.run",
    "edgessl.commands",
    "edgessl.edge_runtime.commands.replay",
    "edgessl.edge_runtime.commands.triage",
    "edgessl.edge_runtime.commands.trust",
)

DESCRIPTION = """\
edgessl: unlabeled images to an INT8 anomaly detector on the edge.

The pipeline, one command per step (listed below): pretrain a backbone on unlabelled
images, fit an anomaly detector on normal images, export a verified ONNX bundle, calibrate
INT8, then run, bench or evaluate it with the torch-free runtime.

Data sources (--data): 'digits' (built in), a MedMNIST .npz, an ImageFolder or MVTec-AD
directory, or a folder of images. Run `edgessl COMMAND --help` for a command's options.
"""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(prog="edgessl", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edgessl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands: dict[str, argparse.ArgumentParser] = {}
    for name in COMMAND_MODULES:
        commands.update(importlib.import_module(name).register(sub))
    for p in commands.values():
        p.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file (command-line options win)")
    return parser, commands


def _config_path(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def _apply_config(path_text: str, command: argparse.ArgumentParser) -> None:
    """Make the YAML file's values the command's defaults; an option it sets is no longer required."""
    import yaml

    path = Path(path_text)
    if not path.is_file():
        raise EdgesslError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise EdgesslError(f"{path}: expected a mapping of option: value")
    options = {a.dest: a for a in command._actions if a.option_strings and a.dest not in ("help", "config")}
    for key, val in values.items():
        dest = str(key).replace("-", "_")
        if dest not in options:
            raise EdgesslError(f"{path}: unknown option {key!r} for this command")
        options[dest].required = False
    command.set_defaults(**{str(k).replace("-", "_"): v for k, v in values.items()})


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    name = next((a for a in argv if a in commands), None)
    try:
        config = _config_path(argv[argv.index(name) + 1:]) if name else None
        if config:
            _apply_config(config, commands[name])
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        return int(args.handler(args) or 0)
    except EdgesslError as exc:
        print(f"edgessl {name or ''}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
