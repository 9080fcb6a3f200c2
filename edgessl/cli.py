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
    "edgessl.edge_runtime.commands",
    "edgessl.commands",
    "edgessl.edge_runtime.replay_command",
    "edgessl.edge_runtime.triage_commands",
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


def _apply_config(args: argparse.Namespace, command: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    import yaml

    path = Path(args.config)
    if not path.is_file():
        raise EdgesslError(f"config file not found: {path}")
    values = yaml.safe_load(path.read_text()) or {}
    if not isinstance(values, dict):
        raise EdgesslError(f"{path}: expected a mapping of option: value")
    known = {a.dest for a in command._actions}
    defaults = {}
    for key, val in values.items():
        dest = str(key).replace("-", "_")
        if dest not in known or dest in ("help", "config", "command"):
            raise EdgesslError(f"{path}: unknown option {key!r} for this command")
        defaults[dest] = val
    command.set_defaults(**defaults)
    return command.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    try:
        if getattr(args, "config", None):
            name = args.command
            args = _apply_config(args, commands[name], argv[argv.index(name) + 1:])
            args.command = name
        return int(args.handler(args) or 0)
    except EdgesslError as exc:
        print(f"edgessl {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
