"""The option machinery every command shares: a table of options per command, turned into argparse;
the ``--config`` file; what a command prints and its exit status.

An option is written once, as the user types it, in its command's table (``Opt("--target-fpr",
"false-positive rate to hold")``), so a grep for a flag finds it. What it means is the help text;
its type and default are read from the library's config dataclass field it fills (the spelling
without ``--``/``--no-``, dashes as underscores, unless ``dest`` says otherwise), so a default is
written once, in the library, and ``--help`` shows that value:

* a ``bool`` field is a flag: spelled ``--NAME`` when its default is off, ``--no-NAME`` when on
  (the table must say which; the builder refuses the other);
* a list field takes one or more values; ``X | None`` reads as ``X``;
* an ``override`` option is None unless given (what it overrides keeps its own value): the frame
  selection options written into ``--data``'s string (``selected_data``).

A ``--config FILE.yaml`` key is the long option name (``ignore-label``, also ``ignore_label``; a
flag's key is its name without ``no-``: ``linear-probe: false``). Its values are converted and
checked against the choices like command-line values; a list given on the command line replaces
the file's list. A key that is the Python name of a differently spelled option is refused with
the option's spelling.

Written by hand rather than with jsonargparse or tyro: the builder is ~100 lines, keeps argparse's
help layout, and adds no dependency to the device install.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import typing
from dataclasses import MISSING, Field, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from edgessl.edge_runtime.data.source_text import SourceOptions, with_selection
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.files import read_regular

T = TypeVar("T")

# The exit codes of every command.
EXIT_OK = 0  # success
EXIT_NOTHING = 1  # the command ran but nothing could be processed (every input failed)
EXIT_USER = 2  # a user error: bad option, input, bundle or config file (one line on stderr)
EXIT_INTERRUPTED = 130


@dataclass(frozen=True)
class Opt:
    """One option of a command: its spelling, what it means, and how the value is read."""

    flag: str  # as typed: "--target-fpr", "--no-linear-probe"
    help: str  # what the option means (never its default: --help adds the field's)
    dest: str = ""  # the config field it fills, when not the spelling's
    choices: Sequence | None = None
    metavar: str | None = None
    required: bool = False
    override: bool = False  # None unless given (see the module docstring)
    of: type | None = None  # the dataclass whose field it is, when not one of the command's

    @property
    def field(self) -> str:
        return self.dest or self.flag.removeprefix("--").removeprefix("no-").replace("-", "_")


@dataclass(frozen=True)
class Command:
    """A subcommand: ``name`` (``bundle inspect`` for a nested one), what it runs, the library
    dataclasses its options' types and defaults come from (the first that has the field), its
    options, the one-line help and the description (default: ``run``'s docstring)."""

    name: str
    run: Callable[[argparse.Namespace], "Outcome | None"]
    configs: tuple[type, ...]
    options: tuple[Opt, ...]
    help: str
    description: str = ""


@dataclass
class Outcome:
    """What a command hands back: one JSON-able ``summary`` (printed with ``--json``), the short
    human ``text`` (printed otherwise), the exit status, and whether standard output is taken
    (records were written there, so the summary goes to stderr)."""

    summary: dict
    text: str
    status: int = EXIT_OK
    stdout_taken: bool = False


def summary_lines(title: str, summary: dict, keys: typing.Iterable[str]) -> str:
    """``title`` then ``  key: value`` for each of ``keys`` present in ``summary`` (floats to 4 digits)."""
    rows = [title]
    for k in keys:
        v = summary.get(k)
        if v is None:
            continue
        rows.append(f"  {k}: {v:.4g}" if isinstance(v, float) else f"  {k}: {v}")
    return "\n".join(rows)


def config_field(configs: Sequence[type], name: str) -> tuple[Field, Any]:
    """The field ``name`` of the first of ``configs`` that has it, with its resolved type."""
    for cls in configs:
        found = {f.name: f for f in fields(cls)}
        if name in found:
            return found[name], typing.get_type_hints(cls)[name]
    raise TypeError(f"no field {name!r} in {', '.join(c.__name__ for c in configs)}")


def field_default(f: Field) -> Any:
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None if f.default is MISSING else f.default


def _kind(hint) -> tuple[type, bool]:
    """The element type of a field's annotation and whether it is a list (``X | None`` reads as ``X``)."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (list, tuple):
        return (args[0] if args else str), True
    if args:  # a union with None
        return _kind(args[0])
    return hint, False


class _ListOption(argparse.Action):
    """A list option: its first use on the command line replaces the default (or ``--config``'s
    list), later uses add to it."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = namespace.__dict__.setdefault("_lists_given", set())
        before = list(getattr(namespace, self.dest) or []) if self.dest in given else []
        given.add(self.dest)
        setattr(namespace, self.dest, before + list(values))


def _help(opt: Opt, default: Any) -> str:
    if default is None or default is False or default in ("", []) or opt.required:
        return opt.help
    shown = " ".join(map(str, default)) if isinstance(default, list) else default
    return f"{opt.help} (default: {shown})"


def add_option(parser: argparse.ArgumentParser, opt: Opt, configs: Sequence[type]) -> None:
    """Add ``opt`` with the type and default of its config field."""
    f, hint = config_field((opt.of,) if opt.of else configs, opt.field)
    default = field_default(f)
    kind, is_list = _kind(hint)
    kw: dict[str, Any] = {"dest": opt.field, "default": None if opt.override else default}
    if kind is bool:
        negated = opt.flag.startswith("--no-")
        if negated != bool(default):
            raise TypeError(f"{opt.flag}: field {opt.field} defaults to {default}; spell the flag "
                            f"--{'no-' if default else ''}{opt.field.replace('_', '-')}")
        parser.add_argument(opt.flag, help=opt.help, action="store_false" if default else "store_true", **kw)
        return
    kw.update(type=kind, choices=opt.choices, metavar=opt.metavar)
    if is_list:
        kw.update(nargs="+", action=_ListOption)
    parser.add_argument(opt.flag, help=_help(opt, default), required=opt.required, **kw)


def add_command(sub, command: Command, name: str) -> argparse.ArgumentParser:
    """The subparser of ``command`` under ``name`` (its last word), with ``--config`` and ``--json``."""
    p = sub.add_parser(name, help=command.help,
                       description=command.description or inspect.cleandoc(command.run.__doc__ or ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    for opt in sorted(command.options, key=lambda o: not o.required):
        add_option(p, opt, command.configs)
    p.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file whose keys are the long "
                   "option names (command-line options win; a list given here replaces the file's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.set_defaults(handler=command.run)
    return p


def config_from_args(cls: type[T], args: argparse.Namespace, **given: Any) -> T:
    """The dataclass ``cls`` from the parsed options that are its fields, ``given`` replacing them."""
    names = {f.name for f in fields(cls)}
    return cls(**{**{k: v for k, v in vars(args).items() if k in names}, **given})


def selected_data(args: argparse.Namespace) -> str | None:
    """``--data``'s source string with the frame selection options given on the command line
    written into it (``data.source_text``); None when ``--data`` was not given."""
    if args.data is None:
        return None
    given = {f.name: getattr(args, f.name) for f in fields(SourceOptions) if getattr(args, f.name, None) is not None}
    return with_selection(args.data, given)


def leaf_parser(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.ArgumentParser | None:
    """The (sub)command parser ``argv`` selects, following nested subcommands (``bundle inspect``)."""
    chosen = None
    for word in argv:
        actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if actions and word in actions[0].choices:
            parser = chosen = actions[0].choices[word]
    return chosen


# --config FILE.yaml

def _file_keys(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.Action, bool]]:
    """Each key a config file may use -> (its action, whether the key's value is inverted)."""
    keys = {}
    for a in parser._actions:
        for s in a.option_strings:
            if not s.startswith("--") or a.dest in ("help", "config"):
                continue
            if isinstance(a, argparse._StoreFalseAction) and s.startswith("--no-"):
                keys[s[2:]], keys[s[5:]] = (a, True), (a, False)  # no-X: true, or X: false
            else:
                keys[s[2:]] = (a, False)
    return keys


def _file_value(action: argparse.Action, value: Any, inverted: bool) -> Any:
    """``value`` from YAML as the command line would have read it; ``ValueError`` says why not."""
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return (not value) if inverted else value
    if value is None:
        return None
    if action.nargs == "+":
        items = value if isinstance(value, list) else [value]
        return [_scalar(action, v) for v in items]
    if isinstance(value, (list, dict)):
        raise ValueError(f"expected one value, got {value!r}")
    return _scalar(action, value)


def _scalar(action: argparse.Action, value: Any) -> Any:
    try:
        out = action.type(str(value)) if action.type else value
    except ValueError:
        raise ValueError(f"invalid {action.type.__name__} value {value!r}") from None
    if action.choices is not None and out not in action.choices:
        raise ValueError(f"invalid choice {value!r} (choose from {', '.join(map(str, action.choices))})")
    return out


def apply_config(path_text: str, parser: argparse.ArgumentParser) -> None:
    """Make the YAML file's values the command's defaults; an option it sets is no longer required."""
    import yaml

    path = Path(path_text)
    if not path.exists():
        raise EdgesslError(f"config file not found: {path}")
    data = read_regular(path, "config file")
    try:
        values = yaml.safe_load(data.decode("utf-8")) or {}
    except UnicodeDecodeError:
        raise EdgesslError(f"{path}: not UTF-8 text (a YAML config is text)") from None
    except yaml.YAMLError as exc:
        raise EdgesslError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise EdgesslError(f"{path}: not valid YAML (nested too deeply)") from None
    if not isinstance(values, dict):
        raise EdgesslError(f"{path}: expected a mapping of option: value")
    keys = _file_keys(parser)
    by_dest = {a.dest: s for s, (a, inv) in keys.items() if not inv}
    defaults = {}
    for key, value in values.items():
        name = str(key).replace("_", "-")
        if name not in keys:
            hint = f"; write it as {by_dest[str(key)]!r}" if str(key) in by_dest else ""
            raise EdgesslError(f"{path}: unknown option {key!r} for this command{hint}")
        action, inverted = keys[name]
        try:
            defaults[action.dest] = _file_value(action, value, inverted)
        except (ValueError, TypeError) as exc:
            raise EdgesslError(f"{path}: {key}: {exc}") from None
        action.required = False
    parser.set_defaults(**defaults)


def emit(outcome: Outcome | None, as_json: bool) -> int:
    """Print ``outcome`` (one JSON object, or its text) and return its exit status."""
    import json

    if outcome is None:  # e.g. a non-zero rank of a distributed run: rank 0 reports
        return EXIT_OK
    stream = sys.stderr if outcome.stdout_taken else sys.stdout
    print(json.dumps(outcome.summary, default=str) if as_json else outcome.text, file=stream, flush=True)
    return outcome.status
