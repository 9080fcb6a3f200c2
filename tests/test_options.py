"""Options from each command's table, typed and defaulted by the library's config dataclasses: one
spelling and one default per option, ``--config`` keys as the long option names, choices checked
for file values, lists replaced, one JSON object with ``--json``, and the exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from edgessl.cli import build_parser, main
from edgessl.cli.options import apply_config
from edgessl.edge_runtime.errors import EdgesslError
from runtime_bundle import make_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("bundle"), "knn")


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.RandomState(0)
    for i in range(7):
        cv2.imwrite(str(folder / f"img{i}.png"), rng.randint(0, 255, (20 + i, 24), dtype=np.uint8))
    return folder


def _parse(command: str, argv: list[str], config: dict | None, tmp_path) -> argparse.Namespace:
    parser, commands = build_parser()
    if config is not None:
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump(config))
        apply_config(str(path), commands[command])
    return parser.parse_args([command, *argv])


def test_every_command_builds_and_a_shared_name_means_one_thing():
    """Each command's parser builds (a drifted default of a shared field would raise); an option
    spelled the same across commands has the same help wherever it appears."""
    _, commands = build_parser()
    helps: dict[str, set[str]] = {}
    for name, p in commands.items():
        for a in p._actions:
            if a.option_strings and a.help != argparse.SUPPRESS and a.dest in ("backend", "threads", "device"):
                helps.setdefault(a.option_strings[0], set()).add(a.help)
    assert len(helps["--backend"]) == len(helps["--threads"]) == len(helps["--device"]) == 1


def test_config_keys_are_the_long_option_names(tmp_path):
    args = _parse("evaluate", ["--bundle", "b"], {"ignore-label": ["uncertain"], "batch_size": 32,
                                                    "linear-probe": False}, tmp_path)
    assert args.ignore_labels == ["uncertain"] and args.batch_size == 32 and args.linear_probe is False


def test_a_python_name_is_refused_with_the_option_spelling(tmp_path):
    with pytest.raises(EdgesslError, match="unknown option 'ignore_labels'.*write it as 'ignore-label'"):
        _parse("evaluate", [], {"ignore_labels": ["x"]}, tmp_path)


@pytest.mark.parametrize("config, message", [({"precision": "int16"}, "invalid choice 'int16'"),
                                             ({"batch-size": "many"}, "invalid int value"),
                                             ({"features": "yes"}, "expected true or false")])
def test_file_values_are_checked_like_command_line_values(tmp_path, config, message):
    with pytest.raises(EdgesslError, match=message):
        _parse("run", [], config, tmp_path)


def test_a_command_line_list_replaces_the_file_list(tmp_path):
    config = {"ignore-label": ["a", "b"]}
    assert _parse("evaluate", [], config, tmp_path).ignore_labels == ["a", "b"]
    assert _parse("evaluate", ["--ignore-label", "c"], config, tmp_path).ignore_labels == ["c"]
    assert _parse("evaluate", ["--ignore-label", "c", "--ignore-label", "d"], config, tmp_path).ignore_labels == \
        ["c", "d"]


def test_a_config_file_supplies_a_required_option(bundle, images, tmp_path, capsys):
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({"bundle": str(bundle), "source": str(images),
                                                       "out": str(tmp_path / "r.jsonl")}))
    assert main(["run", "--config", str(tmp_path / "run.yaml"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["scored"] == 7


def test_json_prints_exactly_one_object_and_the_default_a_summary(bundle, images, tmp_path, capsys):
    argv = ["run", "--bundle", str(bundle), "--source", str(images), "--out", str(tmp_path / "r.jsonl")]
    assert main([*argv, "--json"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and json.loads(out)["scored"] == 7
    assert main([*argv, "--force"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("edgessl run: 7 scored, 0 failed")


@pytest.mark.parametrize("argv, code", [
    (["run", "--source", "x"], 2),  # a required option missing: argparse's usage error
    (["run", "--bundle", "nowhere", "--source", "x"], 2),  # not a bundle
    (["run", "--bundle", "B", "--source", "x", "--precision", "int16"], 2),
    (["triage", "--bundle", "B", "--source", "x", "--out", "o", "--split", "nope"], 2),
    (["evaluate", "--data", "digits"], 2),  # neither --run nor --bundle
])
def test_user_errors_exit_2(argv, code, bundle, capsys):
    argv = [str(bundle) if a == "B" else a for a in argv]
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        rc = exc.code
    assert rc == code


def test_nothing_processed_exits_1(bundle, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"garbage")
    out = tmp_path / "triage"
    assert main(["triage", "--bundle", str(bundle), "--source", str(tmp_path / "bad.png"), "--out", str(out)]) == 1
    assert main(["run", "--bundle", str(bundle), "--source", str(tmp_path / "bad.png"), "--out",
                 str(tmp_path / "r.jsonl")]) == 1


def test_one_thing_has_one_spelling_across_commands():
    """The field an option fills has the same flag on every command (``--torch-precision`` is PyTorch's
    precision everywhere, ``--precision`` always the bundle model's)."""
    _, commands = build_parser()
    spellings: dict[str, set[str]] = {}
    for p in commands.values():
        for a in p._actions:
            if a.option_strings and a.dest not in ("help", "config", "json"):
                spellings.setdefault(a.dest, set()).update(s for s in a.option_strings if s.startswith("--"))
    assert {dest: flags for dest, flags in spellings.items() if len(flags) > 1} == {}
    assert spellings["torch_precision"] == {"--torch-precision"} and spellings["precision"] == {"--precision"}


def test_every_option_is_spelled_in_the_source_and_shows_the_library_default():
    """A grep for a flag finds it (each is written out in ``edgessl/cli``); its default is the library
    dataclass field's, shown by ``--help`` and never restated in the help text."""
    import edgessl.cli as cli_package
    from edgessl.cli.main import COMMANDS
    from edgessl.cli.options import config_field, field_default

    source = "".join(p.read_text() for p in Path(cli_package.__file__).parent.glob("*.py"))
    _, parsers = build_parser()
    for command in COMMANDS:
        actions = {a.dest: a for a in parsers[command.name]._actions}
        for opt in command.options:
            assert f'"{opt.flag}"' in source, opt.flag
            default = field_default(config_field((opt.of,) if opt.of else command.configs, opt.field)[0])
            action = actions[opt.field]
            assert action.default == (None if opt.override else default), (command.name, opt.flag)
            if default not in (None, False, "", []):
                assert "(default:" not in opt.help, (command.name, opt.flag, opt.help)
                if not isinstance(default, (bool, list)):
                    assert action.help.endswith(f"(default: {default})"), (command.name, opt.flag)


@pytest.mark.parametrize("command", ["fit", "evaluate", "finetune"])
def test_training_side_commands_default_to_the_runs_recorded_data(tiny_run, tmp_path, capsys, command):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    for name in ("model.json", "detector/fit.json"):
        meta = json.loads((run / name).read_text())
        meta["data"] = str(tmp_path / "recorded-elsewhere")
        (run / name).write_text(json.dumps(meta))
    extra = ["--out", str(tmp_path / "ft")] if command == "finetune" else []
    assert main([command, "--run", str(run), "--device", "cpu", *extra]) == 2
    assert "recorded-elsewhere" in capsys.readouterr().err


def test_only_the_option_machinery_calls_argparse():
    import edgessl.cli as cli_package

    for path in Path(cli_package.__file__).parent.glob("*.py"):
        if path.name not in ("options.py", "main.py"):
            assert "add_argument(" not in path.read_text(), f"{path.name} declares an option by hand; add an Opt"


def test_a_flag_spelled_against_its_field_default_is_refused():
    """A bool field that defaults to on must be spelled ``--no-NAME`` (and the reverse)."""
    from edgessl.cli.options import Opt, add_option
    from edgessl.train.config import EvaluateConfig

    with pytest.raises(TypeError, match="--no-linear-probe"):
        add_option(argparse.ArgumentParser(), Opt("--linear-probe", "x"), (EvaluateConfig,))


def test_a_required_option_is_required(tmp_path, capsys):
    assert _parse("triage", ["--bundle", "b", "--source", "x", "y", "--out", "o"], None, tmp_path).source == ["x", "y"]
    with pytest.raises(SystemExit) as exc:
        main(["triage", "--bundle", "b", "--out", "o"])
    assert exc.value.code == 2 and "required: --source" in capsys.readouterr().err
