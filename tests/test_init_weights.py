"""``pretrain --init-weights``: torchvision-layout state dicts (.pth, safetensors) into the backbone, and
clear one-line refusals for another architecture, a missing key or a stem of another shape."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
from torchvision import models  # noqa: E402

from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.train.backbones import BackboneConfig, build_backbone  # noqa: E402
from edgessl.train.checkpoint import load_model  # noqa: E402
from edgessl.train.init_weights import load_init_weights  # noqa: E402


def _torchvision_file(tmp_path, arch: str, fmt: str = "pth", drop: str | None = None):
    torch.manual_seed(7)
    state = getattr(models, arch)(weights=None).state_dict()
    if drop:
        del state[drop]
    path = tmp_path / f"{arch}.{fmt}"
    if fmt == "pth":
        torch.save(state, path)
    else:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path, state


@pytest.mark.parametrize("arch,fmt,channels,size", [("resnet18", "pth", 3, 128), ("resnet18", "safetensors", 3, 128),
                                                    ("mobilenet_v3_small", "pth", 3, 32)])
def test_a_torchvision_state_dict_loads_into_the_backbone(tmp_path, arch, fmt, channels, size):
    path, state = _torchvision_file(tmp_path, arch, fmt)
    backbone = build_backbone(BackboneConfig(arch, channels, size))
    load_init_weights(backbone, path)
    own = backbone.state_dict()
    layer = "layer3.1.conv2.weight" if arch == "resnet18" else "features.5.block.0.0.weight"
    ours = "stages.3.1.conv2.weight" if arch == "resnet18" else "stages.3.5.block.0.0.weight"
    assert torch.equal(own[ours], state[layer])
    stem, our_stem = ("conv1.weight", "stages.0.0.weight") if arch == "resnet18" else \
        ("features.0.0.weight", "stages.0.0.0.weight")
    if own[our_stem].shape == state[stem].shape:  # the ImageNet stem (resnet18 above 96 px)
        assert torch.equal(own[our_stem], state[stem])


def _text_file(path):
    path.write_text("not torch")
    return path


@pytest.mark.parametrize("make,message", [
    (lambda p: _torchvision_file(p, "mobilenet_v3_small")[0], "missing ['stages.0.0.weight'"),  # another arch
    (lambda p: _torchvision_file(p, "resnet18", drop="layer2.0.bn1.running_mean")[0], "missing ['stages.2.0.bn1"),
    (lambda p: _torchvision_file(p, "resnet18")[0], "shape of stages.0.0.weight"),  # 7x7 RGB stem vs 3x3 grey
    (lambda p: _text_file(p / "x.pth"), "not a readable state dict"),
])
def test_wrong_weights_are_one_clear_line_naming_the_first_mismatch(tmp_path, capsys, make, message):
    path = make(tmp_path)
    args = ["pretrain", "--data", "digits", "--image-size", "32", "--max-steps", "1", "--device", "cpu",
            "--init-weights", str(path), "--out", str(tmp_path / "run")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    with pytest.raises(EdgesslError):
        load_init_weights(build_backbone(BackboneConfig("resnet18", 1, 32)), path)


@pytest.mark.slow
def test_pretrain_starts_from_the_file_and_trains_on(tmp_path):
    path, state = _torchvision_file(tmp_path, "resnet18")
    out = tmp_path / "run"
    assert main(["pretrain", "--data", "digits", "--channels", "3", "--image-size", "100", "--batch-size", "16",
                 "--max-images", "32", "--max-steps", "1", "--method", "rotation", "--device", "cpu",
                 "--init-weights", str(path), "--out", str(out)]) == 0
    backbone, _, _ = load_model(out)
    trained = backbone.state_dict()["stages.4.1.conv2.weight"]
    start = state["layer4.1.conv2.weight"]
    assert not torch.equal(trained, start) and torch.allclose(trained, start, atol=0.05)  # one step away
    assert json.loads((out / "pretrain_summary.json").read_text())["steps"] == 1
