"""The ``edgessl`` command: one entry point, a subcommand per pipeline step.

Each command is a ``Command`` (options table + handler) in this package; a handler imports its
heavy modules only when it runs, so ``edgessl run`` never imports torch. Every subcommand takes
``--config FILE.yaml`` (keys: the long option names; the command line wins) and ``--json`` (one
JSON object instead of the summary).
"""

from __future__ import annotations

import argparse
import sys

from edgessl import __version__
from edgessl.edge_runtime.errors import EdgesslError

from .adapt import COMMANDS as ADAPT
from .bench import COMMANDS as BENCH
from .dicom_node import COMMANDS as DICOM_NODE
from .export import COMMANDS as EXPORT
from .medical import COMMANDS as MEDICAL
from .options import EXIT_INTERRUPTED, EXIT_USER, Command, add_command, apply_config, emit, leaf_parser
from .run import COMMANDS as RUN
from .train import COMMANDS as TRAIN
from .trust import COMMANDS as TRUST
from .trust import GROUPS

COMMANDS: tuple[Command, ...] = (*TRAIN, *EXPORT, *RUN, *ADAPT, *BENCH, *MEDICAL, *DICOM_NODE, *TRUST)

DESCRIPTION = """\
edgessl: unlabeled images to an INT8 anomaly detector on the edge.

The pipeline, one command per step (listed below): pretrain a backbone on unlabelled
images, fit an anomaly detector on normal images, export a verified ONNX bundle, calibrate
INT8, then run, bench or evaluate it with the torch-free runtime.

Datasets (--data, training side): 'digits' (built in), a MedMNIST .npz, an ImageFolder or
MVTec-AD directory, a folder of images, a video, a ROS 2 bag, DICOM, a .csv/.txt list of files
with labels, or folders of these (docs/data-sources.md). What the runtime scores (--source):
those, an image, a glob, a video, a camera, a ROS 2 bag, DICOM studies. Run `edgessl COMMAND
--help` for a command's options.
"""

EPILOG = """exit status (every command): 0 success; 1 nothing could be processed (every input failed);
2 a user error (bad option, input, bundle or config file) or a refusal of the machine (a read-only
or full disk), said in one line on stderr.
"""


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, and each command's own parser by its name (``bundle inspect`` for a nested one)."""
    parser = argparse.ArgumentParser(prog="edgessl", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"edgessl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    groups: dict[str, argparse._SubParsersAction] = {}
    parsers: dict[str, argparse.ArgumentParser] = {}
    for command in COMMANDS:
        *group, name = command.name.split(" ")
        where = sub
        if group:
            if group[0] not in groups:
                g = sub.add_parser(group[0], help=GROUPS[group[0]])
                groups[group[0]] = g.add_subparsers(dest=f"{group[0]}_command", metavar="ACTION", required=True)
                parsers[group[0]] = g
            where = groups[group[0]]
        parsers[command.name] = add_command(where, command, name)
    return parser, parsers


def _config_path(argv: list[str]) -> str | None:
    for i, a in enumerate(argv):
        if a == "--config" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--config="):
            return a.split("=", 1)[1]
    return None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser, _ = build_parser()
    command = leaf_parser(parser, argv)
    name = command.prog.removeprefix("edgessl ") if command else ""
    try:
        config = _config_path(argv) if command else None
        if config:
            apply_config(config, command)
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USER
        return emit(args.handler(args), args.json)
    except EdgesslError as exc:
        print(f"edgessl {name}: error: {exc}", file=sys.stderr)
        return EXIT_USER
    except OSError as exc:  # the machine refused: a read-only or full disk, permissions, a vanished file
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"edgessl {name}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
