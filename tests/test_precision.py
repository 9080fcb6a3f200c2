"""The compute precision: bf16 only where the CPU does it natively (detected), ``--precision`` overrides,
``fit`` keeps fp32 under ``auto``, and the loop and feature extraction run in what was chosen."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.edge_runtime.preprocess import PreprocessSpec  # noqa: E402
from edgessl.train import precision  # noqa: E402
from edgessl.train.backbones import BackboneConfig, build_backbone  # noqa: E402
from edgessl.train.features import embed_tensor  # noqa: E402

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def _restore_choice():
    yield
    precision.select("auto")


def test_cpu_flags_are_read_from_the_flags_line():
    text = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16\nbugs\t\t: none\n"
    assert precision.cpu_flags(text) == {"fpu", "sse", "avx2", "avx512f", "avx512_bf16"}
    assert precision.cpu_flags("no flags here") == set()


@pytest.mark.parametrize("native, want", [(True, "bf16"), (False, "fp32")])
def test_auto_follows_the_cpu_and_explicit_choices_win(monkeypatch, native, want):
    monkeypatch.setattr(precision, "cpu_has_native_bf16", lambda: native)
    assert precision.resolve("auto", CPU) == want
    assert precision.resolve("fp32", CPU) == "fp32" and precision.resolve("bf16", CPU) == "bf16"
    precision.select("auto")
    assert precision.active("cpu").name == want
    assert precision.select("auto", shipped=True) == "fp32" and precision.active("cpu").name == "fp32"
    assert precision.select("bf16", shipped=True) == "bf16"


def test_an_unknown_precision_is_refused():
    with pytest.raises(EdgesslError, match="precision must be one of"):
        precision.select("fp16")


def test_bf16_features_come_back_float32_and_close_to_fp32():
    backbone = build_backbone(BackboneConfig("resnet18", 1, 16))
    spec = PreprocessSpec(16, 1, (0.5,), (0.25,))
    images = torch.randint(0, 256, (8, 1, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    precision.select("fp32")
    ref = embed_tensor(backbone, images, spec)
    precision.select("bf16")
    got = embed_tensor(backbone, images, spec)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert not np.array_equal(got, ref)  # bf16 did run
    cos = (got * ref).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(ref, axis=1)
    assert cos.min() > 0.99


@pytest.mark.parametrize("flag", ["fp32", "bf16"])
def test_pretrain_flag_sets_the_loop_precision(tmp_path, capsys, flag):
    out = tmp_path / "run"
    assert main(["pretrain", "--data", "digits", "--method", "rotation", "--backbone", "mobilenet_v3_small",
                 "--image-size", "16", "--batch-size", "16", "--max-steps", "2", "--max-images", "64",
                 "--device", "cpu", "--torch-precision", flag, "--out", str(out)]) == 0
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["precision"] == flag
