"""Adaptation on a real bundle (digits, a knn detector scored inside the ONNX graph): confirmed-normal
images of a shifted condition go into a sealed delta beside the bundle; the base and its signature
stay as they were; every refusal is one line, exit 2, nothing changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgessl.cli import main
from edgessl.edge_runtime.bundle import Bundle
from edgessl.edge_runtime.bundle_update import update_bundle
from edgessl.edge_runtime.data.datasets import open_dataset
from edgessl.edge_runtime.detectors.bank_growth import grow_bank
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.pipeline import Pipeline
from runtime_bundle import make_bundle
from cli_refusal import refused


def shifted(img: np.ndarray, levels: int) -> np.ndarray:
    return np.clip(img.astype(np.int32) + levels, 0, 255).astype(np.uint8)


def brighter(img: np.ndarray) -> np.ndarray:
    """The shifted normal condition: a camera 80 grey levels brighter (the base detector flags it;
    beyond the int8-cpu model's calibrated activation ranges)."""
    return shifted(img, 80)


def darker(img: np.ndarray) -> np.ndarray:
    """Another: 80 grey levels darker (flagged too; within every INT8 model's ranges)."""
    return shifted(img, -80)


def _write(folder: Path, images: list[np.ndarray]) -> Path:
    folder.mkdir()
    for i, img in enumerate(images):
        cv2.imwrite(str(folder / f"{i:03d}.png"), img)
    return folder


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("adapt") / "bundle", "knn", graph_scores=True, fit_record=True)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> dict[str, Path]:
    """Shifted training zeros to adapt with (not among the bundle's bank or held-out images: those are
    the first zeros of the training split), shifted test zeros to judge, other test digits (anomalies)."""
    d = tmp_path_factory.mktemp("frames")
    train, test = open_dataset("digits", "train"), open_dataset("digits", "test")
    zeros = np.flatnonzero(train.labels == 0)
    test_zeros = np.flatnonzero(test.labels == 0)
    return {"adapt": _write(d / "adapt", [brighter(train.image(int(i))) for i in zeros[-40:]]),
            "judge": _write(d / "judge", [brighter(test.image(int(i))) for i in test_zeros]),
            "adapt_dark": _write(d / "adapt_dark", [darker(train.image(int(i))) for i in zeros[-40:]]),
            "judge_dark": _write(d / "judge_dark", [darker(test.image(int(i))) for i in test_zeros]),
            "anomalies": _write(d / "anomalies", [test.image(int(i)) for i in np.flatnonzero(test.labels == 1)[:10]])}


@pytest.fixture(scope="module")
def calibrated_made(made, tmp_path_factory) -> Path:
    """``made`` calibrated for both INT8 targets (each keeps its held-out normal scores in the report)."""
    from edgessl.calibration.calibrate import CalibrateConfig, calibrate_bundle

    b = shutil.copytree(made, tmp_path_factory.mktemp("calibrated") / "bundle")
    calibrate_bundle(CalibrateConfig(bundle=str(b), data="digits", target="both", method="minmax", num_images=64,
                                     holdout_images=128))
    return b


@pytest.fixture
def bundle(made, tmp_path) -> Path:
    b = tmp_path / "bundle"
    shutil.copytree(made, b)
    return b


@pytest.fixture
def calibrated(calibrated_made, tmp_path) -> Path:
    b = tmp_path / "calibrated"
    shutil.copytree(calibrated_made, b)
    return b


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("keys")
    assert main(["keygen", "--out", str(d / "signer")]) == 0
    return {"private": d / "signer", "public": d / "signer.pub"}


def _snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _adapt(bundle: Path, data: Path, *extra: str) -> list[str]:
    return ["adapt", "--bundle", str(bundle), "--data", str(data), *extra]


def _flagged(pipe: Pipeline, folder: Path) -> float:
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(folder.iterdir())]
    return float(np.mean([r.is_anomaly for r in pipe.score_batch(images)]))


def test_adapting_to_a_brighter_camera_brings_its_false_positives_back_to_the_target(bundle, frames, capsys):
    before = Pipeline.load(bundle)
    assert _flagged(before, frames["judge"]) > 0.9  # the base detector flags the brighter camera
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 0
    assert "40 images added, 40 of them flagged" in capsys.readouterr().out
    after = Pipeline.load(bundle)
    record = json.loads((bundle / "adapt" / "adapt.json").read_text())
    assert record["base_sha256"] == before.bundle.hash and record["added"]["images"] == 40
    assert after.threshold_record.raw_threshold == record["thresholds"]["fp32"]["raw_threshold"]
    assert _flagged(after, frames["judge"]) <= 0.2  # unseen brighter zeros: back near the 10% target
    assert _flagged(after, frames["anomalies"]) >= 0.8  # other digits are still anomalies
    assert after.detector.banks()["knn"].shape[0] == before.detector.banks()["knn"].shape[0] + 40


def test_a_calibrated_bundle_adapts_at_each_int8_model_with_its_own_threshold(calibrated, bundle, frames, capsys):
    int8 = {"backend": "ort-cpu", "precision": "int8"}
    before = Pipeline.load(calibrated, **int8)
    assert before.precision_key == "int8-cpu" and _flagged(before, frames["judge_dark"]) > 0.9
    assert main(_adapt(calibrated, frames["adapt_dark"], "--accept-flagged")) == 0
    assert "int8-cpu 0.003208 -> " in capsys.readouterr().out
    record = json.loads((calibrated / "adapt" / "adapt.json").read_text())
    assert set(record["thresholds"]) == {"fp32", "int8-cpu", "int8-tensorrt"} and record["left_out"] == {}
    assert {k: len(v) for k, v in record["added"]["raw_scores"].items()} == {k: 40 for k in record["thresholds"]}
    after = Pipeline.load(calibrated, **int8)
    assert after.threshold_record.raw_threshold == record["thresholds"]["int8-cpu"]["raw_threshold"]
    assert record["thresholds"]["int8-cpu"] != record["thresholds"]["fp32"]
    assert _flagged(after, frames["judge_dark"]) <= 0.2  # the darker camera's false positives fall at int8 too
    assert _flagged(after, frames["anomalies"]) >= 0.8
    assert main(_adapt(bundle, frames["adapt_dark"], "--accept-flagged")) == 0  # fp32 as without INT8 models
    assert json.loads((bundle / "adapt" / "adapt.json").read_text())["thresholds"]["fp32"] == record["thresholds"]["fp32"]
    capsys.readouterr()
    assert main(["bundle", "inspect", "--bundle", str(calibrated), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["adapt"]
    assert shown["thresholds"] == {k: t["raw_threshold"] for k, t in record["thresholds"].items()}


def test_an_int8_model_whose_ranges_miss_the_new_condition_is_left_out(calibrated, frames, capsys):
    """80 grey levels brighter saturates the int8-cpu model's activations: its scores of the new images
    drift from fp32's (a threshold from them would blind it to anomalies), so it gets none."""
    assert main(_adapt(calibrated, frames["adapt"], "--accept-flagged")) == 0
    assert "int8-cpu left out, running it with the delta is refused: it separates" in capsys.readouterr().out
    record = json.loads((calibrated / "adapt" / "adapt.json").read_text())
    assert set(record["thresholds"]) == {"fp32", "int8-tensorrt"}
    assert "its INT8 ranges do not cover the new condition" in record["left_out"]["int8-cpu"]
    run = ["run", "--bundle", str(calibrated), "--source", str(frames["judge"]), "--backend", "ort-cpu"]
    refused(capsys, [*run, "--precision", "int8"], "holds no int8-cpu threshold", "do not cover the new condition",
             "re-run `edgessl calibrate`, then `edgessl adapt`, or run with --no-delta")
    assert main([*run, "--precision", "fp32"]) == 0
    assert main(_adapt(calibrated, frames["adapt_dark"], "--accept-flagged")) == 0  # its bank holds the brighter rows
    assert json.loads((calibrated / "adapt" / "adapt.json").read_text())["left_out"] == record["left_out"]


def _drop_kept_scores(root: Path, m: dict) -> dict:
    """The calibration report without the int8-cpu model's held-out normal scores (a change by update_bundle)."""
    path = root / m["calibration"]["report"]
    report = json.loads(path.read_text())
    report["targets"]["int8-cpu"]["holdout_normal_scores"] = None
    path.write_text(json.dumps(report))
    return m


def test_an_int8_model_without_kept_scores_is_left_out_and_refused_with_the_delta(calibrated, frames, capsys):
    update_bundle(calibrated, _drop_kept_scores)
    assert main(_adapt(calibrated, frames["adapt_dark"], "--accept-flagged")) == 0
    assert "int8-cpu left out, running it with the delta is refused: no held-out normal int8-cpu scores kept" in \
        capsys.readouterr().out
    record = json.loads((calibrated / "adapt" / "adapt.json").read_text())
    assert set(record["thresholds"]) == {"fp32", "int8-tensorrt"} and set(record["left_out"]) == {"int8-cpu"}
    run = ["run", "--bundle", str(calibrated), "--source", str(frames["judge_dark"]), "--backend", "ort-cpu"]
    refused(capsys, [*run, "--precision", "int8"], "holds no int8-cpu threshold", "re-run `edgessl calibrate`, then "
             "`edgessl adapt`", "--no-delta")
    assert main([*run, "--precision", "int8", "--no-delta"]) == 0
    assert main([*run, "--precision", "fp32"]) == 0
    capsys.readouterr()
    assert main(["bundle", "inspect", "--bundle", str(calibrated)]) == 0
    assert "int8-cpu       none (no held-out normal int8-cpu scores kept" in capsys.readouterr().out
    with pytest.raises(EdgesslError, match="re-derived from the engine's own scores by `edgessl build-engine`"):
        Bundle.load(calibrated).adapt_threshold("engine-int8")


def test_the_base_and_its_signature_stay_as_they_were(bundle, frames, keys):
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    base = _snapshot(bundle)
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged", "--public-key", str(keys["public"]))) == 0
    now = _snapshot(bundle)
    assert {k: v for k, v in now.items() if not k.startswith("adapt/")} == base
    assert sorted(k for k in now if k.startswith("adapt/")) == ["adapt/adapt.json", "adapt/detector.json",
                                                                 "adapt/detector.npz"]
    assert main(["bundle", "verify", "--bundle", str(bundle), "--public-key", str(keys["public"])]) == 0


def test_no_delta_ignores_it_and_removing_it_rolls_back(bundle, frames, tmp_path, capsys):
    base = Pipeline.load(bundle)
    images = [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(frames["judge"].iterdir())]
    base_scores = [r.raw_score for r in base.score_batch(images)]
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 0
    adapted = [r.raw_score for r in Pipeline.load(bundle).score_batch(images)]
    assert np.mean(adapted) < np.mean(base_scores)
    ignored = Pipeline.load(bundle, delta=False)
    assert [r.raw_score for r in ignored.score_batch(images)] == base_scores
    assert ignored.threshold_record == base.threshold_record
    out = tmp_path / "r.jsonl"
    assert main(["run", "--bundle", str(bundle), "--source", str(frames["judge"]), "--no-delta", "--out", str(out)]) == 0
    assert [json.loads(line)["raw_score"] for line in out.read_text().splitlines()] == base_scores
    shutil.rmtree(bundle / "adapt")
    rolled = Pipeline.load(bundle)
    assert [r.raw_score for r in rolled.score_batch(images)] == base_scores
    assert rolled.threshold_record == base.threshold_record


def test_bundle_inspect_shows_the_delta(bundle, frames, capsys):
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 0
    capsys.readouterr()
    assert main(["bundle", "inspect", "--bundle", str(bundle), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["adapt"]
    assert shown["base_sha256"] == Bundle.load(bundle).hash and shown["images"] == 40 and shown["flagged"] == 40
    assert shown["banks"]["knn"] == 100 and shown["signature"] == {"signed": False}


def test_a_tampered_delta_is_refused(bundle, frames, capsys):
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 0
    path = bundle / "adapt" / "adapt.json"
    record = json.loads(path.read_text())
    record["thresholds"]["fp32"]["raw_threshold"] *= 10
    path.write_text(json.dumps(record))
    refused(capsys, ["run", "--bundle", str(bundle), "--source", str(frames["judge"])], "edited after it was sealed")
    assert main(["run", "--bundle", str(bundle), "--source", str(frames["judge"]), "--no-delta"]) == 0
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 2  # remove it first: nothing replaced it
    shutil.rmtree(bundle / "adapt")
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 0
    npz = bundle / "adapt" / "detector.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    with pytest.raises(EdgesslError, match="missing or altered"):
        Pipeline.load(bundle)


def test_a_delta_for_another_base_is_refused(bundle, frames, tmp_path, capsys):
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 0
    other = make_bundle(tmp_path / "other", "patch", graph_scores=True, fit_record=True)
    shutil.copytree(bundle / "adapt", other / "adapt")
    refused(capsys, ["run", "--bundle", str(other), "--source", str(frames["judge"])],
             "made for bundle", "remove adapt/ and run `edgessl adapt` again")


def test_a_required_signed_delta_is_refused_unsigned_and_accepted_signed(bundle, frames, keys, capsys):
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"])]) == 0
    assert main(_adapt(bundle, frames["adapt"], "--accept-flagged")) == 0
    trust = ["--public-key", str(keys["public"]), "--require-signed-delta"]
    run = ["run", "--bundle", str(bundle), "--source", str(frames["judge"])]
    refused(capsys, [*run, *trust], "adapt: not signed", "edgessl sign --bundle B --key KEY --delta")
    refused(capsys, [*run, "--require-signed-delta"], "give --public-key")
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"]), "--delta"]) == 0
    assert main([*run, *trust]) == 0
    capsys.readouterr()
    assert main(["bundle", "inspect", "--bundle", str(bundle), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["adapt"]["signature"]["signed"]
    signature = bundle / "adapt" / "signature.json"
    record = json.loads(signature.read_text())
    record["signature"] = record["signature"][:-4] + ("AAA=" if not record["signature"].endswith("AAA=") else "BBB=")
    signature.write_text(json.dumps(record))
    refused(capsys, [*run, *trust], "bad signature")
    refused(capsys, [*run, "--public-key", str(keys["public"])], "bad signature")  # present: always checked


def test_flagged_images_are_refused_and_nothing_changes(bundle, frames, capsys):
    before = _snapshot(bundle)
    line = refused(capsys, _adapt(bundle, frames["anomalies"]), "of the 10 images score as anomalies",
                    "--accept-flagged")
    assert "000.png" in line
    refused(capsys, _adapt(bundle, frames["adapt"]), "40 of the 40 images")
    assert _snapshot(bundle) == before and not (bundle / "adapt").exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--max-bank", "100000000"], "more than the device's 256 MiB"),
    (["--max-bank", "50"], "not above the 60 rows"),
    (["--folds", "50"], "fewer than --folds 50"),
])
def test_a_bank_the_device_cannot_hold_and_other_bad_input_are_refused(bundle, frames, capsys, extra, fragment):
    before = _snapshot(bundle)
    refused(capsys, _adapt(bundle, frames["adapt"], "--accept-flagged", *extra), fragment)
    assert _snapshot(bundle) == before


def test_a_bank_grows_by_its_most_novel_rows_up_to_its_bound():
    rng = np.random.default_rng(0)
    bank = rng.normal(size=(10, 4)).astype(np.float32)
    rows = np.concatenate([bank[:3], rng.normal(5.0, 1.0, size=(20, 4))]).astype(np.float32)
    grown = grow_bank(bank, rows, 15, "test")
    assert grown.shape == (15, 4) and np.array_equal(grown[:10], bank)
    assert not any((grown[10:] == b).all(axis=1).any() for b in bank[:3])  # rows already in the bank: never added
    everything = grow_bank(bank, rows, 1000, "test")
    assert len(everything) == 10 + 20  # room for all: every new row but the three already there


def test_a_second_adapt_adds_to_the_first_and_no_delta_starts_again(bundle, frames, keys):
    first, second = str(frames["adapt"] / "00*.png"), str(frames["adapt"] / "01*.png")
    assert main(_adapt(bundle, Path(first), "--accept-flagged")) == 0
    assert main(["sign", "--bundle", str(bundle), "--key", str(keys["private"]), "--delta"]) == 0
    assert main(_adapt(bundle, Path(second), "--accept-flagged")) == 0
    record = json.loads((bundle / "adapt" / "adapt.json").read_text())
    assert record["added"]["images"] == 20 and len(record["added"]["raw_scores"]["fp32"]) == 20
    assert record["added"]["data"] == [first, second] and record["banks"]["knn"] == 80
    assert not (bundle / "adapt" / "signature.json").exists()  # it signed the record before
    assert main(_adapt(bundle, Path(second), "--accept-flagged", "--no-delta")) == 0
    record = json.loads((bundle / "adapt" / "adapt.json").read_text())
    assert record["added"]["images"] == 10 and record["banks"]["knn"] == 70


def test_a_combined_detector_grows_its_banks_and_keeps_its_gaussian_and_standardisation():
    from edgessl.edge_runtime.detectors import CombinedDetector, GaussianDetector, KnnDetector, PatchDetector

    rng = np.random.default_rng(0)
    gaussian = GaussianDetector(np.zeros(6), np.eye(6))
    det = CombinedDetector([gaussian, KnnDetector(rng.normal(size=(30, 6)), k=2),
                            PatchDetector(rng.normal(size=(50, 4)).astype(np.float32))], [1.0, 0.2, 0.5], [0.5, 0.1, 0.3])
    new = {"embedding": rng.normal(3.0, 1.0, size=(8, 6)).astype(np.float32),
           "patches": rng.normal(3.0, 1.0, size=(8, 4, 2, 2)).astype(np.float32)}
    grown = det.grown(new, 60)
    assert {k: len(v) for k, v in grown.banks().items()} == {"knn": 38, "patch": 60}
    assert grown.parts[0] is gaussian and grown.medians == det.medians and grown.scales == det.scales
    assert (grown.score(new).raw_scores < det.score(new).raw_scores).all()
    with pytest.raises(EdgesslError, match="no memory bank"):
        gaussian.grown(new, 60)


def test_a_still_camera_s_repeated_frames_are_cross_fitted_against_other_frames(made, frames, tmp_path):
    """Folds are contiguous blocks in reading order: of 12 frames each seen 10 times in a row (a camera
    that barely moves), a copy is scored against its own copies only where a block boundary splits a
    frame's run (here 1 in 60); random folds put copies on both sides of every fold (1 in 3 scored 0)."""
    from edgessl.edge_runtime.streams.adapt import AdaptConfig, adapt_bundle

    distinct = sorted(frames["adapt"].iterdir())[:12]
    still = _write(tmp_path / "still", [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in distinct for _ in range(10)])
    b = shutil.copytree(made, tmp_path / "still_bundle")
    adapt_bundle(AdaptConfig(bundle=str(b), data=str(still), accept_flagged=True))
    added = np.asarray(Bundle.load(b).adapt.record["added"]["raw_scores"]["fp32"])
    assert len(added) == 120 and np.mean(added < 1e-9) <= 0.05
