"""Options generated from config dataclasses: one spelling and one default per option, ``--config``
keys as the long option names, choices checked for file values, lists replaced, one JSON object
with ``--json``, and the exit codes."""

from __future__ import annotations

import argparse
import json
from dataclasses import fields

import cv2
import numpy as np
import pytest
import yaml

from edgessl.cli import build_parser, main
from edgessl.edge_runtime.commands.options import apply_config, option_name
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
    assert main(argv) == 0
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


def test_option_names_are_the_field_names_with_dashes():
    from edgessl.edge_runtime.commands.run import RunConfig

    names = {option_name(f) for f in fields(RunConfig)}
    assert {"bundle", "source", "batch-size", "queue-size", "out", "overlays", "features"} <= names


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


def test_no_command_writes_an_option_by_hand():
    """Every option comes from a config dataclass field, so its default is written once (the field)."""
    import importlib
    import inspect

    from edgessl.cli import COMMAND_MODULES

    for name in (*COMMAND_MODULES, "edgessl.bench_command", "edgessl.demo"):
        source = inspect.getsource(importlib.import_module(name))
        assert "add_argument(" not in source, f"{name} declares an option by hand; declare it as a config field"


def test_an_old_spelling_still_works_and_a_required_option_is_still_required(tmp_path, capsys):
    assert _parse("triage", ["--bundle", "b", "--input", "x", "y", "--out", "o"], None, tmp_path).source == ["x", "y"]
    with pytest.raises(SystemExit) as exc:
        main(["triage", "--bundle", "b", "--out", "o"])
    assert exc.value.code == 2 and "required: --source" in capsys.readouterr().err
