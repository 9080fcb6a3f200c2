"""Training-loop pieces: schedule, sharding across processes, checkpoints that refuse other backbones."""

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
