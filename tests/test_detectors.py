"""Numpy detector scoring against brute-force formulas, its files, the neighbour search, the coreset,
heatmap geometry, and the metrics against scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from requires import require
from edgessl.edge_runtime.data import metrics
from edgessl.edge_runtime.detectors import (DETECTORS, CombinedDetector, GaussianDetector, KnnDetector,
                                            PatchDetector, load_detector)
from edgessl.edge_runtime.detectors import neighbours
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.heatmaps import mask_at_input, overlay, upsample_map
from edgessl.edge_runtime.preprocess import PreprocessSpec

RNG = np.random.default_rng(0)


def _brute_sq(q, b):
    return ((q[:, None, :].astype(np.float64) - b[None].astype(np.float64)) ** 2).sum(-1)


def test_nearest_matches_brute_force_and_does_not_depend_on_block_size(monkeypatch):
    q, b = RNG.normal(size=(500, 24)).astype(np.float32), RNG.normal(size=(300, 24)).astype(np.float32)
    ref = np.sort(_brute_sq(q, b), axis=1)[:, :4]
    d, idx = neighbours.nearest(q, b, 4)
    np.testing.assert_allclose(d, ref, rtol=1e-12)
    np.testing.assert_allclose(_brute_sq(q, b)[np.arange(500)[:, None], idx], ref, rtol=1e-12)
    monkeypatch.setattr(neighbours, "BLOCK_ELEMENTS", 7 * 300)
    np.testing.assert_array_equal(neighbours.nearest(q, b, 4)[0], d)


def test_nearest_keeps_precision_near_zero():
    b = RNG.normal(size=(50, 512)).astype(np.float32) * 100
    q = b[:5] + np.float32(1e-3)
    d, idx = neighbours.nearest(q, b, 1)
    np.testing.assert_array_equal(idx[:, 0], np.arange(5))
    np.testing.assert_allclose(d[:, 0], _brute_sq(q, b[:5]).diagonal(), rtol=1e-6)


def test_cosine_helpers_are_cosine():
    q, b = RNG.normal(size=(40, 16)), RNG.normal(size=(30, 16))
    cos = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    sims, _ = neighbours.topk_cosine(q, b, 3)
    np.testing.assert_allclose(sims, -np.sort(-cos, axis=1)[:, :3], atol=1e-6)
    top3 = -np.sort(-cos, axis=1)[:, :3]
    np.testing.assert_allclose(neighbours.mean_cosine_distance(q, b, 3), (1 - top3).mean(1), atol=1e-6)


def test_gaussian_is_mahalanobis():
    x = RNG.normal(size=(20, 8))
    mu, a = RNG.normal(size=8), RNG.normal(size=(8, 8))
    prec = a @ a.T + np.eye(8)
    raw = GaussianDetector(mu, prec).score({"embedding": x}).raw_scores
    x32 = x.astype(np.float32).astype(np.float64)  # model outputs are float32
    ref = np.sqrt([(v - mu) @ prec @ (v - mu) for v in x32])
    np.testing.assert_allclose(raw, ref, rtol=1e-10)


def test_knn_is_mean_cosine_distance_to_k_nearest():
    bank, x = RNG.normal(size=(60, 12)), RNG.normal(size=(10, 12))
    det = KnnDetector(bank, k=3)
    cos = (x / np.linalg.norm(x, axis=1, keepdims=True)) @ (bank / np.linalg.norm(bank, axis=1, keepdims=True)).T
    ref = (1 - np.sort(cos, axis=1)[:, ::-1][:, :3]).mean(1)
    out = det.score({"embedding": x})
    np.testing.assert_allclose(out.raw_scores, ref, atol=1e-6)
    assert out.maps is None


@pytest.mark.parametrize("top, reduce", [(1, lambda m: m.max(1)), (0, lambda m: m.mean(1)),
                                        (3, lambda m: -np.sort(-m, 1)[:, :3].mean(1))])
def test_patch_map_is_nearest_patch_distance_and_score_its_top_values_mean(top, reduce):
    bank = RNG.normal(size=(40, 6)).astype(np.float32)
    p = RNG.normal(size=(3, 6, 4, 5)).astype(np.float32)
    out = PatchDetector(bank, top=top).score({"patches": p, "embedding": np.zeros((3, 2))})
    rows = p.transpose(0, 2, 3, 1).reshape(-1, 6)
    ref = np.sqrt(_brute_sq(rows, bank).min(1)).reshape(3, 4, 5)
    np.testing.assert_allclose(out.maps, ref, rtol=1e-6)
    np.testing.assert_allclose(out.raw_scores, reduce(ref.reshape(3, -1)), rtol=1e-6)


@pytest.mark.parametrize("top", [1, 0])
def test_combined_is_the_mean_of_standardised_parts_and_its_map_peaks_at_its_score(top):
    parts = [GaussianDetector(RNG.normal(size=5), np.eye(5)), KnnDetector(RNG.normal(size=(9, 5)), 2),
             PatchDetector(RNG.normal(size=(30, 6)), 1, top)]
    medians, scales = [1.0, 0.2, 3.0], [0.5, 0.1, 2.0]
    feats = {"embedding": RNG.normal(size=(4, 5)), "patches": RNG.normal(size=(4, 6, 3, 3)).astype(np.float32)}
    out = CombinedDetector(parts, medians, scales).score(feats)
    z = [(p.score(feats).raw_scores - m) / s for p, m, s in zip(parts, medians, scales)]
    np.testing.assert_allclose(out.raw_scores, np.mean(z, axis=0), rtol=1e-12)
    np.testing.assert_allclose(out.maps.reshape(4, -1).max(1), out.raw_scores, rtol=1e-5)
    patch_map = (parts[2].score(feats).maps - 3.0) / 2.0
    np.testing.assert_allclose(np.diff(out.maps.reshape(4, -1), axis=1), np.diff(patch_map.reshape(4, -1), axis=1) / 3,
                               rtol=1e-4, atol=1e-6)  # the map varies as the patch part's, scaled by 1/n
    with pytest.raises(EdgesslError, match="exactly one part that makes maps"):
        CombinedDetector(parts[:2], medians[:2], scales[:2])
    with pytest.raises(EdgesslError, match="positive"):
        CombinedDetector(parts, medians, [0.5, 0.0, 2.0])


def test_a_parts_scale_is_the_spread_of_its_upper_normal_scores():
    require("torch")  # the train side
    from edgessl.train.detectors.combined import standardisation

    assert standardisation(np.arange(101.0)) == (50.0, 40.0)  # the 90th percentile minus the median
    bulk = RNG.normal(size=400)
    tame, heavy = bulk.copy(), bulk.copy()
    heavy[bulk > np.percentile(bulk, 80)] *= 3  # the same lower half, a longer upper tail
    assert standardisation(heavy)[0] == standardisation(tame)[0]
    assert standardisation(heavy)[1] > 2 * standardisation(tame)[1]  # it counts less in the mean
    with pytest.raises(EdgesslError, match="do not spread above their median"):
        standardisation(np.r_[np.zeros(95), np.arange(1.0, 6.0)])


@pytest.mark.parametrize("det", [
    GaussianDetector(RNG.normal(size=5), np.eye(5)),
    KnnDetector(RNG.normal(size=(9, 5)), 2),
    PatchDetector(RNG.normal(size=(9, 5)), 1),
    PatchDetector(RNG.normal(size=(9, 5)), 1, top=0),
    CombinedDetector([KnnDetector(RNG.normal(size=(9, 5)), 2), PatchDetector(RNG.normal(size=(9, 5)), 1)],
                     [0.1, 2.0], [0.05, 0.7]),
])
def test_files_round_trip_and_dispatch_on_kind(det, tmp_path):
    det.save(tmp_path)
    meta = json.loads((tmp_path / "detector.json").read_text())
    assert meta["format"] == "edgessl-detector" and meta["kind"] == det.kind
    assert meta["inputs"] == list(det.inputs)
    with np.load(tmp_path / "detector.npz", allow_pickle=False) as npz:
        assert set(npz.files) == set(meta["arrays"])
    loaded = load_detector(tmp_path)
    assert type(loaded) is DETECTORS[det.kind] and loaded.params() == det.params()
    feats = {"embedding": RNG.normal(size=(4, 5)), "patches": RNG.normal(size=(4, 5, 3, 3))}
    np.testing.assert_array_equal(loaded.score(feats).raw_scores, det.score(feats).raw_scores)


def test_a_patch_detector_saved_without_top_scores_by_the_max_and_a_negative_top_is_refused(tmp_path):
    PatchDetector(RNG.normal(size=(9, 5)), 1, top=0).save(tmp_path)
    meta = json.loads((tmp_path / "detector.json").read_text())
    del meta["params"]["top"]  # a detector saved before top existed
    (tmp_path / "detector.json").write_text(json.dumps(meta))
    assert load_detector(tmp_path).top == 1
    (tmp_path / "detector.json").write_text(json.dumps({**meta, "params": {**meta["params"], "top": -1}}))
    with pytest.raises(EdgesslError, match="'top' must be an integer from 0"):
        load_detector(tmp_path)
    from edgessl.train.detectors.patch import fit_patch

    with pytest.raises(EdgesslError, match=r"--top must be 0 \(the whole map\) or more \(got -1\)"):
        fit_patch(RNG.normal(size=(9, 5)), top=-1)


def test_bad_detector_files_and_inputs(tmp_path):
    with pytest.raises(EdgesslError, match="no fitted detector"):
        load_detector(tmp_path)
    det = KnnDetector(RNG.normal(size=(9, 5)), 2)
    det.save(tmp_path)
    meta = json.loads((tmp_path / "detector.json").read_text())
    (tmp_path / "detector.json").write_text(json.dumps({**meta, "kind": "mystery"}))
    with pytest.raises(EdgesslError, match="unknown detector kind"):
        load_detector(tmp_path)
    (tmp_path / "detector.json").write_text(json.dumps({**meta, "version": 99}))
    with pytest.raises(EdgesslError, match="version 99"):
        load_detector(tmp_path)
    with pytest.raises(EdgesslError, match="needs the model output 'embedding'"):
        det.score({"patches": np.zeros((1, 5, 2, 2))})
    with pytest.raises(EdgesslError, match="5 channels"):
        det.score({"embedding": np.zeros((1, 7))})


def test_coreset_covers_the_points_better_than_random():
    torch = require("torch")
    from edgessl.train.detectors.coreset import greedy_coreset

    torch.manual_seed(0)
    blobs = np.concatenate([RNG.normal(c, 0.05, size=(200, 8)) for c in np.eye(8) * 5]).astype(np.float32)
    idx = greedy_coreset(blobs, 8, projection_dim=4)
    assert len(set(idx)) == 8
    assert len({int(i) // 200 for i in idx}) == 8  # one centre in every blob
    with pytest.raises(EdgesslError, match="--coreset 2000 is more than the 1600"):
        greedy_coreset(blobs, 2000)


def test_heatmap_geometry():
    spec = PreprocessSpec(32, 1, (0.5,), (0.25,))
    mask = np.zeros((64, 48), np.uint8)
    mask[:32] = 255
    m = mask_at_input(mask, (64, 48), spec)
    assert m.shape == (32, 32) and m.dtype == bool and m[:16].all() and not m[16:].any()
    with pytest.raises(EdgesslError, match="masks must have their image's size"):
        mask_at_input(mask, (60, 48), spec, "x.png")
    up = upsample_map(np.arange(16, dtype=np.float32).reshape(4, 4), 32)
    assert up.shape == (32, 32) and up[0, 0] == 0 and up[-1, -1] == 15
    assert overlay(np.zeros((32, 32), np.uint8), up / 15).shape == (32, 32, 3)


@pytest.fixture(scope="module")
def scored():
    y = RNG.random(400) < 0.3
    s = np.round(RNG.normal(size=400) + 1.2 * y, 1)  # rounded: ties are exercised
    return y, s


def test_metrics_match_sklearn(scored):
    y, s = scored
    assert metrics.auroc(y, s) == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert metrics.aupr(y, s) == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    p, r, t = skm.precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0)[:-1]
    best, thr = metrics.f1_max(y, s)
    assert best == pytest.approx(f1.max(), abs=1e-12)
    assert thr == pytest.approx(t[np.argmax(f1)])
    fpr, tpr, _ = metrics.roc_curve(y, s)
    sk_fpr, sk_tpr, _ = skm.roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)


def test_rates_at_threshold(scored):
    y, s = scored
    fpr, tpr = metrics.rates_at_threshold(y, s, 1.0)
    assert fpr == pytest.approx((s[~y] >= 1.0).mean()) and tpr == pytest.approx((s[y] >= 1.0).mean())


def test_pixel_auroc_and_its_bad_input():
    masks = [RNG.random((8, 8)) > 0.8 for _ in range(3)]
    maps = [m + RNG.normal(0, 0.5, m.shape) for m in masks]
    ref = skm.roc_auc_score(np.concatenate([m.ravel() for m in masks]), np.concatenate([a.ravel() for a in maps]))
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(ref)
    with pytest.raises(EdgesslError, match="mask 1 has shape"):
        metrics.pixel_auroc(masks, [maps[0], maps[1][:4], maps[2]])
    with pytest.raises(EdgesslError, match="both normal and anomalous"):
        metrics.aupr(np.zeros(5), np.arange(5))
