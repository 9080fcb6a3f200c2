"""``edgessl finetune``: the stratified labelled fraction, the linear probe's folded head, and both
modes end to end on the session's tiny digits run (the output loads through ``load_model``, as
``evaluate``, ``fit`` and ``export`` do)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from requires import require

torch = require("torch")

from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.data.datasets import open_dataset  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.train.checkpoint import load_model  # noqa: E402
from edgessl.train.finetune import LinearProbe, head_accuracy, labelled_subset, load_head  # noqa: E402


def test_labelled_subset_is_stratified_seeded_and_keeps_every_class():
    labels = np.repeat([0, 1, 2], [100, 50, 3])
    idx = labelled_subset(labels, 0.1, seed=0)
    assert np.bincount(labels[idx]).tolist() == [10, 5, 1]
    np.testing.assert_array_equal(idx, labelled_subset(labels, 0.1, seed=0))
    assert not np.array_equal(idx, labelled_subset(labels, 0.1, seed=1))
    assert len(labelled_subset(labels, 1.0)) == len(labels)
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(EdgesslError, match="label-fraction"):
            labelled_subset(labels, bad)


def test_folded_linear_probe_equals_the_standardised_one():
    feats = torch.randn(20, 6) * 3 + 1
    probe = LinearProbe(feats, 4)
    x = torch.randn(5, 6)
    torch.testing.assert_close(probe.folded()(x), probe.head((x - probe.mean) / probe.std))


def _finetune(tiny_run, out, *extra):
    return main(["finetune", "--run", str(tiny_run), "--data", "digits", "--label-fraction", "0.1",
                 "--device", "cpu", "--out", str(out), *extra])


@pytest.mark.slow
def test_linear_probe_writes_a_loadable_run_and_head(tiny_run, tmp_path):
    out = tmp_path / "probe"
    assert _finetune(tiny_run, out, "--linear", "--epochs", "20") == 0
    summary = json.loads((out / "finetune_summary.json").read_text())
    train = open_dataset("digits", "train")
    assert summary["mode"] == "linear" and summary["labelled_images"] == len(labelled_subset(train.labels, 0.1))
    assert 0.3 < summary["test_accuracy"] <= 1.0  # 10 classes: chance is 0.1
    backbone, spec, meta = load_model(out)
    source, _, _ = load_model(tiny_run)
    for a, b in zip(backbone.state_dict().values(), source.state_dict().values()):
        torch.testing.assert_close(a, b)  # frozen
    head, classes = load_head(out)
    assert classes == train.class_names and meta["finetune"]["mode"] == "linear"
    test = open_dataset("digits", "test")
    assert head_accuracy(backbone, head, test, spec, torch.device("cpu")) == pytest.approx(summary["test_accuracy"])


@pytest.mark.slow
def test_full_finetuning_changes_the_backbone(tiny_run, tmp_path):
    out = tmp_path / "full"
    assert _finetune(tiny_run, out, "--epochs", "2") == 0
    summary = json.loads((out / "finetune_summary.json").read_text())
    assert summary["mode"] == "full" and summary["epochs_done"] == 2 and 0.0 <= summary["test_accuracy"] <= 1.0
    tuned, _, _ = load_model(out)
    source, _, _ = load_model(tiny_run)
    changed = [not torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), source.state_dict().values())]
    assert any(changed)
    assert (out / "head.safetensors").is_file() and (out / "config.yaml").is_file()


def test_finetune_refuses_unlabelled_data_and_its_own_run(tiny_run, tmp_path, capsys):
    import cv2

    folder = tmp_path / "plain"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((8, 8), i * 20, np.uint8))
    assert main(["finetune", "--run", str(tiny_run), "--data", str(folder), "--out", str(tmp_path / "x")]) == 2
    assert "labelled" in capsys.readouterr().err
    assert main(["finetune", "--run", str(tiny_run), "--data", "digits", "--out", str(tiny_run)]) == 2
    assert "--out" in capsys.readouterr().err
