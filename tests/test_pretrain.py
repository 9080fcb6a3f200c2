"""Pretext tasks: their pieces, one epoch of each on BreastMNIST that `evaluate` loads, resume,
``--config``, and two gloo processes under torchrun."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from requires import require

torch = require("torch")

from edgessl.cli import main  # noqa: E402
from edgessl.edge_runtime.preprocess import PreprocessSpec  # noqa: E402
from edgessl.train.backbones import BackboneConfig, build_backbone  # noqa: E402
from edgessl.train.checkpoint import load_model  # noqa: E402
from edgessl.train import pretrain as pretrain_module  # noqa: E402
from edgessl.train.config import METHOD_SUMMARIES, PRETRAIN_STEPS, PretrainConfig  # noqa: E402
from edgessl.train.data import normalise  # noqa: E402
from edgessl.train.methods import METHODS  # noqa: E402
from edgessl.train.methods.byol import BYOL  # noqa: E402
from edgessl.train.methods.ema import cosine_momentum, ema_update  # noqa: E402
from edgessl.train.methods.gan import GAN  # noqa: E402
from edgessl.train.methods.jigsaw import Jigsaw, hamming_permutations  # noqa: E402
from edgessl.train.methods.moco import MoCo  # noqa: E402

SHARED = Path(os.environ.get("EDGESSL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
BREAST = SHARED / "breastmnist" / "breastmnist.npz"
SMALL = ["--backbone", "mobilenet_v3_small", "--image-size", "16", "--device", "cpu"]


def small(size: int = 16, name: str = "mobilenet_v3_small"):
    return build_backbone(BackboneConfig(name, 1, size)), PreprocessSpec(size, 1, (0.5,), (0.25,))


def images(n: int = 8, size: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 1, size, size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_every_method_is_registered_and_summarised():
    assert list(METHODS) == list(METHOD_SUMMARIES)
    assert {m.name for m in METHODS.values()} == set(METHOD_SUMMARIES)


def test_hamming_permutations_are_distinct_far_apart_and_seeded():
    p = hamming_permutations(100, seed=0)
    assert p.shape == (100, 9) and len({tuple(r) for r in p}) == 100
    assert all(sorted(r) == list(range(9)) for r in p)
    dist = (p[:, None] != p[None]).sum(2) + 9 * np.eye(100, dtype=int)
    assert dist.min() >= 5  # a random set of 100 has pairs at distance 2
    np.testing.assert_array_equal(p[:20], hamming_permutations(20, seed=0))
    assert not np.array_equal(p[:20], hamming_permutations(20, seed=1))


def test_jigsaw_tiles_follow_the_permutation():
    backbone, spec = small(48)
    jig = Jigsaw(backbone, spec, num_permutations=10)
    x = torch.zeros(2, 1, 48, 48)
    for cell in range(9):
        r, c = divmod(cell, 3)
        x[:, :, 16 * r : 16 * r + 16, 16 * c : 16 * c + 16] = cell
    target = torch.tensor([3, 7])
    pieces = jig.puzzle(x, target)
    assert pieces.shape == (2, 9, 1, 12, 12)
    for i in range(2):
        for j in range(9):
            assert (pieces[i, j] == jig.permutations[target[i], j]).all()


def test_cutpaste_alters_one_box_and_one_thin_rotated_scar_per_image():
    from edgessl.train.methods.cutpaste import CutPaste

    torch.manual_seed(0)
    backbone, spec = small(64)
    cp = CutPaste(backbone, spec)
    x = torch.rand(16, 1, 64, 64)
    (box, box_mask), (scar, scar_mask) = cp.synthesise(x)
    for altered, mask, (lo, hi) in ((box, box_mask, (0.02 * 0.5, 0.15 * 1.5)),
                                    (scar, scar_mask, (2 * 10 / 256**2 * 0.5, 16 * 25 / 256**2 * 3))):
        core = (mask > 0.5).flatten(1).float().mean(1)  # the pasted area, to the middle of its soft edge
        assert ((core > 0) & (core <= hi)).float().mean() >= 0.9 and core.median() >= lo
        assert torch.equal(altered * (mask == 0), x * (mask == 0))  # nothing changes outside the mask
        assert ((mask > 0) & (mask < 1)).any()  # a soft edge, no seam
    loss, metrics = cp(images(8, 64))
    loss.backward()
    assert torch.isfinite(loss) and 0 <= metrics["acc"] <= 1 and cp.head[0].weight.grad is not None
    assert cp.seg_head.weight.grad.abs().sum() > 0  # the localisation target trains


def test_perlin_masks_are_blobs_and_the_loss_localises():
    from edgessl.train.methods.perlin import PerlinPaste
    from edgessl.train.methods.synthetic import perlin_noise

    torch.manual_seed(0)
    noise = perlin_noise(4, 32, 32, (4,), "cpu")
    assert noise.abs().max() < 1.0 and noise.std() > 0.1
    assert (noise[..., 1:, :] - noise[..., :-1, :]).abs().mean() < 0.2 * noise.std() * 4  # smooth
    backbone, spec = small(32)
    method = PerlinPaste(backbone, spec)
    x = torch.rand(16, 1, 32, 32)
    altered, mask = method.synthesise(x)
    untouched = mask.flatten(1).amax(1) == 0
    assert 0 < untouched.sum() < 16 and torch.equal(altered[untouched], x[untouched])
    assert torch.equal(altered * (1 - mask), x * (1 - mask))  # only inside the mask
    loss, _ = method(images(8, 32))
    loss.backward()
    assert torch.isfinite(loss) and method.seg_head.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("method,size,message", [("jigsaw", "16", "too small to reassemble"),
                                                 ("cutpaste", "24", "need at least 32 px images")])
def test_a_task_that_cannot_run_at_the_image_size_is_one_clear_line(method, size, message, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["pretrain", "--data", "digits", "--method", method, "--backbone", "mobilenet_v3_small",
            "--image-size", size, "--max-steps", "1", "--device", "cpu", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (out / "model.safetensors").exists()


def test_gan_gradients_reach_only_their_player():
    backbone, spec = small()
    gan = GAN(backbone, spec)
    bn = next(m for m in backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = int(bn.num_batches_tracked)
    loss_d, loss_g, _ = gan.losses(images())
    assert int(bn.num_batches_tracked) == before + 2  # real and fake passes; the frozen pass leaves stats alone
    d_params = [*gan.backbone.parameters(), *gan.head.parameters()]
    g_params = list(gan.generator.parameters())
    assert all(g is None for g in torch.autograd.grad(loss_g, d_params, retain_graph=True, allow_unused=True))
    assert all(g is None for g in torch.autograd.grad(loss_d, g_params, retain_graph=True, allow_unused=True))
    assert any(g is not None for g in torch.autograd.grad(loss_g, g_params, retain_graph=True, allow_unused=True))
    assert any(g is not None for g in torch.autograd.grad(loss_d, d_params, allow_unused=True))
    groups = gan.param_groups()
    assert sum(len(g["params"]) for g in groups) == len(d_params) + len(g_params)


def test_generator_makes_images_of_any_size():
    for size in (16, 28, 64):
        backbone, spec = small(size)
        assert GAN(backbone, spec).fake(2, torch.device("cpu")).shape == (2, 1, size, size)


def test_momentum_schedule_and_ema_update():
    assert cosine_momentum(0.99, 0.0) == pytest.approx(0.99) and cosine_momentum(0.99, 1.0) == pytest.approx(1.0)
    assert cosine_momentum(0.99, 0.5) == pytest.approx(0.995)
    online, target = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    w0 = target.weight.detach().clone()
    ema_update([online], [target], 1.0)
    torch.testing.assert_close(target.weight, w0)
    ema_update([online], [target], 0.75)
    torch.testing.assert_close(target.weight, 0.75 * w0 + 0.25 * online.weight.detach())


def test_byol_target_is_frozen_and_follows_the_online_network():
    backbone, spec = small()
    byol = BYOL(backbone, spec)
    trainable = {id(p) for g in byol.param_groups() for p in g["params"]}
    assert not any(id(p) in trainable for p in byol.target_backbone.parameters())
    loss, _ = byol(images())
    loss.backward()
    with torch.no_grad():
        for p in byol.backbone.parameters():
            p.add_(1.0)
    t0 = next(byol.target_backbone.parameters()).clone()
    byol.on_step_end(0.0)
    assert byol.momentum == pytest.approx(0.99)
    torch.testing.assert_close(next(byol.target_backbone.parameters()), 0.99 * t0 + 0.01 * next(byol.backbone.parameters()))


def test_moco_queue_is_capped_and_cycles():
    backbone, spec = small()
    assert len(MoCo.for_data(backbone, spec, 50).queue) == 50
    assert len(MoCo.for_data(backbone, spec, 100_000).queue) == 4096
    moco = MoCo(backbone, spec, queue_size=5, proj_dim=4)
    keys = torch.eye(4)[:3]
    moco._enqueue(keys)
    moco._enqueue(keys)
    assert int(moco.queue_ptr) == 1
    torch.testing.assert_close(moco.queue[[0, 1, 2, 3, 4]], keys[[2, 1, 2, 0, 1]])
    queue = moco.queue.clone()
    for _ in range(2):  # a step computed twice (the loop's fp32 redo) queues the last pass's keys once
        loss, metrics = moco(images(3))
    assert torch.isfinite(loss) and 0.0 <= metrics["acc"] <= 1.0 and torch.equal(moco.queue, queue)
    moco.on_step_end(0.5)
    assert int(moco.queue_ptr) == (1 + 3) % 5 and not torch.equal(moco.queue[1:4], queue[1:4])


def test_precise_bn_recomputes_running_statistics_with_the_final_weights():
    from edgessl.train.precise_bn import precise_bn

    backbone, spec = small()
    x = images(16)
    bn = backbone.stages[0][0][1]
    bn.running_mean.fill_(5.0)
    precise_bn(backbone, x, spec, torch.device("cpu"), batch_size=16)
    conv_out = backbone.stages[0][0][0](normalise(x, spec))
    torch.testing.assert_close(bn.running_mean, conv_out.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.01 and backbone.training  # torchvision MobileNetV3 momentum, restored


def test_a_time_budget_ends_the_cosine_schedule():
    from edgessl.train.loop import lr_factor

    assert lr_factor(0, 1000, 10, time_progress=0.9) == pytest.approx(0.1)  # warm-up counts steps
    assert lr_factor(50, 1000, 10, time_progress=0.5) == pytest.approx(0.5)
    assert lr_factor(50, 1000, 10, time_progress=1.0) == pytest.approx(0.0)
    assert lr_factor(990, 1000, 10, time_progress=0.1) < 0.01  # the step count still ends it when first


@pytest.fixture(scope="module")
def breast_runs(tmp_path_factory):
    """One epoch of a method on BreastMNIST's 546 training images (mobilenet_v3_small, 16 px, batch 64)."""
    if not BREAST.is_file():
        pytest.skip(f"{BREAST} is not here (real data lives in ../shared/data)")
    runs: dict[str, Path] = {}

    def run(method: str) -> Path:
        if method not in runs:
            out = tmp_path_factory.mktemp(method) / "run"
            size = ["--image-size", "32"] if method in ("jigsaw", "cutpaste") else []  # their defects need room
            assert main(["pretrain", "--data", str(BREAST), "--method", method, *SMALL, *size, "--batch-size", "64",
                         "--epochs", "1", "--out", str(out)]) == 0
            runs[method] = out
        return runs[method]

    return run


@pytest.mark.slow
@pytest.mark.parametrize("method", list(METHODS))
def test_one_epoch_on_breastmnist_then_evaluate(method, breast_runs, capsys):
    run = breast_runs(method)
    summary = json.loads((run / "pretrain_summary.json").read_text())
    assert summary["epochs_done"] == 1 and summary["steps"] == 546 // 64 and summary["images"] == 546
    assert json.loads((run / "model.json").read_text())["method"] == method
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(BREAST), "--normal-label", "1", "--json",
                 "--no-linear-probe", "--device", "cpu"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["method"] == method and 0.0 <= result["knn_accuracy"] <= 1.0 and 0.0 <= result["auroc"] <= 1.0


DIGITS_RUN = ["--data", "digits", *SMALL, "--max-images", "128", "--batch-size", "32"]


@pytest.mark.parametrize("given,expected", [({}, (0, PRETRAIN_STEPS, 0.0)), ({"epochs": 3}, (3, 0, 0.0)),
                                            ({"max_steps": 7}, (0, 7, 0.0)), ({"time_budget": 60.0}, (0, 0, 60.0)),
                                            ({"epochs": 2, "max_steps": 5}, (2, 5, 0.0))])
def test_the_default_budget_applies_only_when_no_budget_is_given(given, expected, tmp_path):
    budget = pretrain_module.schedule(PretrainConfig(out=str(tmp_path), **given))
    assert (budget["epochs"], budget["max_steps"], budget["time_budget_s"]) == expected


def test_pretrain_without_a_budget_trains_the_default_steps_not_one_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(pretrain_module, "PRETRAIN_STEPS", 6)  # the rule, at a test's size
    out = tmp_path / "run"
    assert main(["pretrain", *DIGITS_RUN, "--method", "rotation", "--out", str(out)]) == 0
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["steps"] == 6 and summary["epochs_done"] == 2  # 4 steps an epoch: more than one epoch
    assert yaml.safe_load((out / "config.yaml").read_text())["max-steps"] == 6  # saved resolved: replays alike


def test_resume_without_a_budget_trains_to_the_runs_own_budget(tmp_path, capsys):
    out = tmp_path / "run"
    run = ["pretrain", *DIGITS_RUN, "--method", "rotation", "--out", str(out)]
    assert main([*run, "--max-steps", "2"]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["budget"] == {"epochs": 0, "max_steps": 2, "time_budget_s": 0.0}
    capsys.readouterr()
    assert main([*run, "--resume"]) == 2  # finished: not the default's 650 steps more
    assert "nothing left to train" in capsys.readouterr().err
    state["budget"]["max_steps"] = 3  # as if started with --max-steps 3 and stopped after its second step
    (out / "state.json").write_text(json.dumps(state))
    assert main([*run, "--resume"]) == 0
    assert json.loads((out / "pretrain_summary.json").read_text())["steps"] == 3


def test_the_warm_up_is_held_to_a_tenth_of_a_step_budget(tmp_path):
    out = tmp_path / "run"  # 32 steps an epoch: half an epoch of warm-up would outlast the 10 steps
    assert main(["pretrain", *DIGITS_RUN, "--method", "rotation", "--batch-size", "4", "--max-steps", "10",
                 "--out", str(out)]) == 0
    rates = [float(row["lr"]) for row in csv.DictReader((out / "metrics.csv").open())]
    assert rates[0] == pytest.approx(1e-3)  # at its peak from the first step (half an epoch: 1e-3 / 16)
    assert all(a >= b for a, b in zip(rates, rates[1:])) and rates[-1] < rates[0] / 10  # then it decays


@pytest.mark.slow
def test_resume_continues_the_step_count(tmp_path):
    out = tmp_path / "run"
    assert main(["pretrain", *DIGITS_RUN, "--method", "gan", "--epochs", "1", "--out", str(out)]) == 0
    assert json.loads((out / "state.json").read_text())["step"] == 4
    first = (out / "model.safetensors").read_bytes()
    assert main(["pretrain", *DIGITS_RUN, "--method", "gan", "--epochs", "2", "--resume", "--out", str(out)]) == 0
    state = json.loads((out / "state.json").read_text())
    assert state["step"] == 8 and state["epoch"] == 2
    steps = [int(line.split(",")[1]) for line in (out / "metrics.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 9))
    assert (out / "model.safetensors").read_bytes() != first


@pytest.mark.slow
def test_resuming_a_finished_run_is_one_line_and_changes_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *DIGITS_RUN, "--method", "rotation", "--epochs", "1", "--out", str(out)]) == 0
    state = (out / "state.json").read_bytes()
    capsys.readouterr()
    assert main(["pretrain", *DIGITS_RUN, "--method", "rotation", "--epochs", "1", "--resume", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "nothing left to train" in err and "Traceback" not in err
    assert (out / "state.json").read_bytes() == state


@pytest.mark.slow
def test_config_file_options_and_the_saved_config_reproduce_a_run(tmp_path):
    cfg = tmp_path / "pretrain.yaml"
    cfg.write_text(yaml.safe_dump({"data": "digits", "method": "rotation", "backbone": "mobilenet_v3_small",
                                   "image-size": 16, "batch_size": 32, "max-images": 64, "max_steps": 1,
                                   "device": "cpu"}))
    out = tmp_path / "run"
    assert main(["pretrain", "--config", str(cfg), "--max-steps", "2", "--out", str(out)]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["method"] == "rotation" and saved["image-size"] == 16 and saved["max-steps"] == 2  # CLI wins
    assert json.loads((out / "pretrain_summary.json").read_text())["steps"] == 2
    again = tmp_path / "again"
    assert main(["pretrain", "--config", str(out / "config.yaml"), "--out", str(again)]) == 0
    assert yaml.safe_load((again / "config.yaml").read_text()) == {**saved, "out": str(again)}
    assert (again / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()  # seeded


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "edgessl", "pretrain", *DIGITS_RUN, "--batch-size", "16", "--method", "moco", "--epochs", "1",
           "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "pretrain_summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 128 // 32 and summary["images_seen"] == 128
    backbone, spec, meta = load_model(out)
    assert meta["method"] == "moco" and spec.image_size == 16


def test_config_file_can_supply_a_required_option(tmp_path):
    from edgessl.cli import build_parser
    from edgessl.cli.options import apply_config

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"out": str(tmp_path / "run"), "method": "byol"}))
    parser, commands = build_parser()
    apply_config(str(cfg), commands["pretrain"])
    args = parser.parse_args(["pretrain", "--config", str(cfg), "--epochs", "3"])
    assert (args.out, args.method, args.epochs) == (str(tmp_path / "run"), "byol", 3)


def test_a_time_budget_below_one_step_is_one_clear_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *DIGITS_RUN, "--method", "rotation", "--time-budget", "0.0001", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()  # the progress bar's lines, then the error's one
    assert "shorter than one training step" in err.splitlines()[-1] and "Traceback" not in err
    assert not (out / "model.safetensors").exists()


def _view_area(view: torch.Tensor) -> torch.Tensor:
    """The area fraction a view of the coordinate-ramp image spans (channel 0 ramps along x, 1 along y)."""
    span = view.flatten(2).amax(2) - view.flatten(2).amin(2)
    return span[:, 0] * span[:, 1]


@pytest.mark.parametrize("crop_min", [0.1, 0.7])
def test_views_keep_at_least_crop_min_of_the_image(crop_min):
    from edgessl.train.augment import AugmentConfig, augment

    size = 64
    ramp = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    image = torch.stack([ramp.expand(size, size), ramp[:, None].expand(size, size), torch.zeros(size, size)])
    torch.manual_seed(0)
    views = augment(image.expand(512, 3, size, size), AugmentConfig(crop_scale=(crop_min, 1.0), flip=False,
                                                                    jitter_p=0.0, grey_p=0.0))
    area = _view_area(views)
    # up to an area of 3/4 no side is cut to the image: a view spans its draw, less the ramp's last half pixels
    assert area.min() >= 0.96 * crop_min
    assert area.min() < crop_min + 0.05  # the draw reaches down to crop_min


@pytest.mark.parametrize("method", ["simclr", "byol", "moco"])
def test_pretrain_gives_its_views_the_crop_min_and_records_it(method, tmp_path, monkeypatch):
    import edgessl.train.methods.base as base

    seen = []
    monkeypatch.setattr(base, "augment", lambda x, cfg: seen.append(cfg.crop_scale) or x)
    out = tmp_path / "run"
    assert main(["pretrain", *DIGITS_RUN, "--method", method, "--crop-min", "0.5", "--max-steps", "1",
                 "--out", str(out)]) == 0
    assert seen and set(seen) == {(0.5, 1.0)}
    assert yaml.safe_load((out / "config.yaml").read_text())["crop-min"] == 0.5


@pytest.mark.parametrize("value", ["0", "1.5"])
def test_a_crop_min_outside_zero_to_one_is_one_clear_line(value, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", *DIGITS_RUN, "--crop-min", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--crop-min" in err and "(0, 1]" in err and not out.exists()
