"""The command-line glue every stage's ``commands.py`` shares: options generated from config
dataclasses, the ``--config`` file, the exit codes and what a command prints.

A command's options are the fields of its config dataclass(es) (``edge_runtime.config.option``
carries the help text, choices and spelling), so each default is written once, in the field:

* ``--NAME`` is the field name with dashes (or the field's ``name``); ``bool`` fields are flags
  (``--NAME`` when the default is off, ``--no-NAME`` when it is on); list fields take one or more
  values; ``X | None`` fields read as ``X``.
* A ``--config FILE.yaml`` key is the long option name (``ignore-label``, also ``ignore_label``; a
  flag's key is its name without ``no-``: ``linear-probe: false``). Its values are converted and
  checked against the choices like command-line values; a list given on the command line replaces
  the file's list. A key that is the Python name of a differently spelled option is refused with
  the option's spelling.

Written by hand rather than with jsonargparse or tyro: the generation is ~100 lines, keeps
argparse's help layout, and adds no dependency to the device runtime.
"""

from __future__ import annotations

import argparse
import inspect
import sys
import typing
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..errors import EdgesslError

T = TypeVar("T")

# The exit codes of every command.
EXIT_OK = 0  # success
EXIT_NOTHING = 1  # the command ran but nothing could be processed (every input failed)
EXIT_USER = 2  # a user error: bad option, input, bundle or config file (one line on stderr)
EXIT_INTERRUPTED = 130


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


def option_name(f) -> str:
    return f.metadata.get("name") or f.name.replace("_", "-")


def _default(f) -> Any:
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


def _help(meta, default) -> str:
    text = meta.get("help", "")
    if not (default is None or default is False or default in ("", []) or meta.get("required")):
        shown = " ".join(map(str, default)) if isinstance(default, list) else default
        text = f"{text} (default: {shown})" if text else f"(default: {shown})"
    return text


def add_options(parser: argparse.ArgumentParser, *configs: type) -> None:
    """One option per field of each config dataclass; a field two configs share must agree on its default."""
    seen: dict[str, Any] = {}
    aliases: list[tuple[str, dict]] = []
    for cls in configs:
        hints = typing.get_type_hints(cls)
        own = set(vars(cls).get("__annotations__", {}))
        # shown in --help: required options first, then the command's own, then the shared ones
        for f in sorted(fields(cls), key=lambda f: (not f.metadata.get("required"), f.name not in own)):
            if f.name in seen:
                if _default(f) != _default(seen[f.name]):
                    raise TypeError(f"{cls.__name__}.{f.name}: default {_default(f)!r} differs from "
                                    f"{_default(seen[f.name])!r} of the same option")
                continue
            seen[f.name] = f
            aliases += _add_option(parser, f, hints[f.name])
    for flag, kw in aliases:  # an old spelling: accepted, not shown, unless a real option of the command has it
        if flag not in parser._option_string_actions:
            parser.add_argument(flag, help=argparse.SUPPRESS, **{**kw, "default": argparse.SUPPRESS})


def _add_option(parser: argparse.ArgumentParser, f, hint) -> list[tuple[str, dict]]:
    """Add the option of field ``f``; return its aliases' flags with their argparse settings."""
    meta, default, name = f.metadata, _default(f), option_name(f)
    kind, is_list = _kind(hint)
    kw: dict[str, Any] = {"dest": f.name, "default": default}
    if kind is bool:
        flag = f"--no-{name}" if default else f"--{name}"
        text = f"turn off: {meta.get('help', '')}" if default else meta.get("help", "")
        kw["action"] = "store_false" if default else "store_true"
        parser.add_argument(flag, help=text, **kw)
        return [(f"--{'no-' if default else ''}{alias}", kw) for alias in meta.get("aliases", ())]
    kw.update(type=kind, choices=meta.get("choices"), metavar=meta.get("metavar"))
    if is_list:
        kw.update(nargs="+", action=_ListOption)
    required = meta.get("required", False)
    if required and meta.get("aliases"):  # argparse would not count the alias: checked by check_required
        vars(parser).setdefault("required_with_alias", []).append((f.name, f"--{name}"))
    parser.add_argument(f"--{name}", help=_help(meta, default), required=required and not meta.get("aliases"), **kw)
    return [(f"--{alias}", kw) for alias in meta.get("aliases", ())]


def check_required(parser: argparse.ArgumentParser | None, args: argparse.Namespace) -> None:
    """argparse's own refusal (exit 2) for a required option that has an alias and was given neither way."""
    missing = [flag for dest, flag in vars(parser).get("required_with_alias", []) if not getattr(args, dest, None)]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")


def config_from_args(cls: type[T], args: argparse.Namespace) -> T:
    """The dataclass ``cls`` filled from the parsed options whose names are its fields."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in vars(args).items() if k in names})


def add_command(sub, name: str, handler: Callable, *configs: type, help: str,
                description: str | None = None) -> dict[str, argparse.ArgumentParser]:
    """``{name: parser}`` of a subcommand whose options are ``configs``' fields, described (line
    breaks kept) by ``description`` or else by the handler's docstring."""
    p = sub.add_parser(name, help=help, description=description or inspect.cleandoc(handler.__doc__ or ""),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_options(p, *configs)
    p.add_argument("--config", metavar="FILE.yaml", help="read options from a YAML file whose keys are the long "
                   "option names (command-line options win; a list given here replaces the file's)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the summary")
    p.set_defaults(handler=handler)
    return {name: p}


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
    if not path.is_file():
        raise EdgesslError(f"config file not found: {path}")
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EdgesslError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
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
