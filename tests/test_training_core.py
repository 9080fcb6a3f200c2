"""Training-loop pieces: schedule, sharding across processes, checkpoints that refuse other backbones."""

import json
import math

import pytest

from requires import require

torch = require("torch")

from edgessl.edge_runtime.errors import EdgesslError  # noqa: E402
from edgessl.edge_runtime.preprocess import PreprocessSpec  # noqa: E402
from edgessl.train.backbones import BackboneConfig, build_backbone  # noqa: E402
from edgessl.train.checkpoint import load_model, save_model  # noqa: E402
from edgessl.train.distributed import DistInfo  # noqa: E402
from edgessl.train.loop import _batches, lr_factor, steps_per_epoch  # noqa: E402


def test_warmup_then_cosine():
    total, warm = 100, 10
    f = [lr_factor(s, total, warm) for s in range(total)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:]))
    assert f[-1] < 0.01


def test_ranks_share_a_permutation_without_overlap():
    parts = [_batches(100, 8, epoch=3, seed=0, dist=DistInfo(r, 2, r)) for r in range(2)]
    seen = [int(i) for p in parts for b in p for i in b]
    assert len(seen) == len(set(seen)) == 6 * 16
    a, b = _batches(100, 8, 3, 0, DistInfo()), _batches(100, 8, 4, 0, DistInfo())
    assert not torch.equal(torch.cat(a), torch.cat(b))  # a new shuffle each epoch


def test_too_few_images_for_a_batch():
    with pytest.raises(EdgesslError, match="lower --batch-size"):
        steps_per_epoch(10, 8, DistInfo(0, 2, 0))


def test_checkpoint_round_trip_and_foreign_weights(tmp_path):
    spec = PreprocessSpec(32, 1, (0.4,), (0.2,))
    net = build_backbone(BackboneConfig("resnet18", 1, 32))
    save_model(tmp_path / "run", net, spec, {"method": "simclr"})
    loaded, spec2, meta = load_model(tmp_path / "run")
    assert spec2 == spec and meta["method"] == "simclr"
    x = torch.randn(2, 1, 32, 32)
    net.eval()
    torch.testing.assert_close(loaded(x), net(x))
    other = build_backbone(BackboneConfig("mobilenet_v3_small", 1, 32))
    save_model(tmp_path / "other", other, spec)
    meta_path = tmp_path / "other" / "model.json"
    meta_path.write_text(meta_path.read_text().replace("mobilenet_v3_small", "resnet18"))
    with pytest.raises(EdgesslError, match="another backbone"):
        load_model(tmp_path / "other")


class _Tiny(torch.nn.Module):
    """A pretext task in miniature: regress each image's mean brightness (fast steps, real gradients)."""

    def __init__(self, step_seconds: float = 0.0):
        super().__init__()
        self.head = torch.nn.Linear(16, 1)
        self.step_seconds = step_seconds

    def forward(self, batch):
        import time

        time.sleep(self.step_seconds)
        x = batch.float().flatten(1) / 255.0
        loss = ((self.head(x).squeeze(1) - x.mean(1)) ** 2).mean()
        return loss, {}


def _cfg(epochs: int, time_budget_s: float = 0.0, checkpoint_every_s: float = 0.0):
    from edgessl.train.loop import LoopConfig

    return LoopConfig(epochs=epochs, batch_size=8, lr=1e-3, weight_decay=0.0, warmup_epochs=0.5, seed=0,
                      time_budget_s=time_budget_s, max_steps=0, checkpoint_every_s=checkpoint_every_s)


def _loop(tmp_path, cfg, method):
    from edgessl.train.loop import train

    data = torch.randint(0, 256, (32, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    epochs = []
    summary = train(method, data, cfg, tmp_path, torch.device("cpu"), DistInfo(), epochs.append)
    return summary, epochs


def test_a_time_budget_alone_trains_until_it_is_spent(tmp_path):
    """``epochs`` 0 with a budget: epoch after epoch (a checkpoint each) until the budget ends it."""
    summary, epochs = _loop(tmp_path, _cfg(0, 0.5), _Tiny())
    assert summary["stopped_by_budget"] and summary["seconds"] >= 0.5
    assert summary["epochs_done"] >= 3 and summary["steps"] > 3 * 4 and epochs[:3] == [1, 2, 3]
    bounded, _ = _loop(tmp_path, _cfg(2, 60), _Tiny())
    assert (bounded["epochs_done"], bounded["steps"], bounded["stopped_by_budget"]) == (2, 8, False)


def test_checkpoints_are_spaced_in_time_and_the_last_epoch_always_has_one(tmp_path):
    _, every = _loop(tmp_path, _cfg(4, checkpoint_every_s=0.0), _Tiny())
    assert every == [1, 2, 3, 4]
    _, spaced = _loop(tmp_path, _cfg(4, checkpoint_every_s=1.75), _Tiny(step_seconds=0.25))  # 1 s an epoch
    assert spaced == [2, 4]
    _, last = _loop(tmp_path, _cfg(4, checkpoint_every_s=3600.0), _Tiny())
    assert last == [4] and json.loads((tmp_path / "state.json").read_text())["epoch"] == 4


def test_a_time_budget_below_one_step_is_refused(tmp_path):
    with pytest.raises(EdgesslError, match="shorter than one training step"):
        _loop(tmp_path, _cfg(0, 0.01), _Tiny(step_seconds=0.05))
    with pytest.raises(EdgesslError, match="needs an end"):
        _loop(tmp_path, _cfg(0), _Tiny())


class _Diverging(_Tiny):
    def forward(self, batch):
        loss, metrics = super().forward(batch)
        return loss * float("nan"), metrics


def test_a_failing_step_still_closes_the_tensorboard_writer(tmp_path, monkeypatch):
    import edgessl.train.loop as loop

    closed = []
    real = loop._tensorboard

    def recording(run_dir):
        writer = real(run_dir)
        close = writer.close
        writer.close = lambda: (closed.append(True), close())
        return writer

    monkeypatch.setattr(loop, "_tensorboard", recording)
    with pytest.raises(EdgesslError, match="diverged"):
        _loop(tmp_path, _cfg(1), _Diverging())
    assert closed == [True]


class _InfiniteGradient(torch.autograd.Function):
    """Identity forward, infinite gradient backward: an overflow in bf16's backward, in miniature."""

    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return torch.full_like(grad, float("inf"))


class _Overflowing(_Tiny):
    def __init__(self, bad_steps: set[int]):
        super().__init__()
        self.bad_steps, self.calls = bad_steps, 0

    def forward(self, batch):
        self.calls += 1
        loss, metrics = super().forward(batch)
        return (_InfiniteGradient.apply(loss) if self.calls in self.bad_steps else loss), metrics


class _OverflowingInBf16(_Tiny):
    """Non-finite gradients whenever autocast is on: an overflow only bf16 has."""

    def forward(self, batch):
        loss, metrics = super().forward(batch)
        return (_InfiniteGradient.apply(loss) if torch.is_autocast_enabled("cpu") else loss), metrics


def test_a_bf16_step_with_non_finite_gradients_is_skipped_then_redone_in_fp32():
    from edgessl.train.loop import MAX_SKIPPED, train_step
    from edgessl.train.precision import Compute

    batch, cfg = [torch.randint(0, 255, (8, 16)).float()], _cfg(1)
    bf16, fp32 = Compute(torch.device("cpu"), torch.bfloat16), Compute(torch.device("cpu"), None)
    model = _Overflowing({1})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    loss, metrics = train_step(model, opt, batch, cfg, 1.0, bf16, step=0)
    assert metrics["skipped"] and all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    loss, metrics = train_step(model, opt, batch, cfg, 1.0, bf16, step=1)  # the next step trains
    assert "skipped" not in metrics and not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))

    model = _OverflowingInBf16()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    before = [p.detach().clone() for p in model.parameters()]
    for skipped in range(MAX_SKIPPED):
        assert train_step(model, opt, batch, cfg, 1.0, bf16, skipped, skipped)[1]["skipped"]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    loss, metrics = train_step(model, opt, batch, cfg, 1.0, bf16, MAX_SKIPPED, MAX_SKIPPED)  # redone in fp32
    assert "skipped" not in metrics and metrics["redone"] and math.isfinite(loss)
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
    for compute, skipped in ((bf16, MAX_SKIPPED), (fp32, 0)):  # fp32's own non-finite gradients are a divergence
        fresh = _Overflowing({1, 2})
        with pytest.raises(EdgesslError, match="diverged at step 5"):
            train_step(fresh, torch.optim.AdamW(fresh.parameters()), batch, cfg, 1.0, compute, 5, skipped)


def test_a_run_that_overflows_in_bf16_at_every_step_trains_every_step_after_the_skips(tmp_path, monkeypatch):
    from edgessl.train import precision
    from edgessl.train.loop import MAX_SKIPPED

    monkeypatch.setattr(precision, "_selected", "bf16")
    model = _OverflowingInBf16()
    before = [p.detach().clone() for p in model.parameters()]
    summary, _ = _loop(tmp_path, _cfg(2), model)  # 2 epochs of 4 steps
    assert summary["steps"] == 8 and summary["precision"] == "bf16"
    assert summary["fp32_redone_steps"] == 8 - MAX_SKIPPED  # skipped three, then every overflow redone at once
    assert not all(torch.equal(a, b) for a, b in zip(before, model.parameters()))
