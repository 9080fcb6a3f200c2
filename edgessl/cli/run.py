"""``run`` and ``replay`` (torch-free), and what every command that scores a source shares: loading
the pipeline, the records, the summary and its exit status."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from edgessl.edge_runtime.drift import NO_PERCENTILES, DriftConfig, DriftWatch, drift_config
from edgessl.edge_runtime.errors import EdgesslError
from edgessl.edge_runtime.outputs import output_file, output_folder, refuse_overlap
from edgessl.edge_runtime.pipeline_options import BundleOptions
from edgessl.edge_runtime.streams.runner import RunOptions

from .options import EXIT_NOTHING, EXIT_OK, Command, Opt, Outcome, config_from_args
from .shared import BUNDLE, SCORING, SPLIT


@dataclass
class RecordOptions:
    """Where a scoring command's records go (None: standard output) and whether an existing file
    there is replaced, whether they hold each image's embedding, a threshold override in normalised
    units, and the drift watch's window (None: ``DriftConfig``'s; 0: no drift watch)."""

    threshold: float | None = None
    out: str | None = None
    force: bool = False
    features: bool = False
    drift_window: int | None = None


@dataclass
class RunConfig(RecordOptions, RunOptions, BundleOptions):
    source: str = ""
    split: str = "test"
    overlays: str | None = None


@dataclass
class ReplayConfig(RecordOptions, RunOptions, BundleOptions):
    source: str = ""
    topic: list[str] = field(default_factory=list)  # empty: every image topic


RECORDS = (
    Opt("--threshold", "override the decision threshold (normalised units)"),
    Opt("--out", "JSONL file (default: standard output)", metavar="results.jsonl"),
    Opt("--force", "replace an existing --out file"),
    Opt("--features", "add each image's embedding to its record"),
    Opt("--drift-window", "recent scores the drift watch compares with the bundle's held-out normal scores "
                          f"(default: {DriftConfig.window}; 0: no drift watch; docs/runtime.md)", metavar="N"),
)


def check_outputs(cfg: RecordOptions | BundleOptions, inputs: list[Path], overlays: str | None = None) -> None:
    """Refuse, before anything is read, records or overlays that would land on an input (the source,
    the key), above one, or inside the bundle, and an existing --out file without --force."""
    keys = [cfg.public_key] if cfg.public_key else []
    if cfg.out not in (None, "-"):
        refuse_overlap(cfg.out, "--out", [*inputs, *keys], sealed=[cfg.bundle])
        output_file(cfg.out, "--out", cfg.force)
    if overlays:
        refuse_overlap(overlays, "--overlays", [*inputs, *keys], sealed=[cfg.bundle])
        output_folder(overlays, "--overlays")


def load_pipeline(cfg: BundleOptions, threshold: float | None = None):
    """The ``Pipeline`` the bundle options describe; says on stderr which backend ``auto`` took."""
    pipe = cfg.pipeline(threshold)
    how = " (auto)" if cfg.backend == "auto" else ""
    print(f"edgessl: backend {pipe.backend}{how}, precision {pipe.precision_key}, bundle {pipe.bundle.hash[:12]}",
          file=sys.stderr)
    return pipe


def drift_line(d: dict, scores: str) -> str:
    """A drift report (``DriftReport.to_dict``) as one summary line; ``scores`` says which were tested."""
    return (f"  drift: {'ALARM' if d['alarm'] else 'none'} ({scores}: KS {d['statistic']:.3f}, p {d['p_value']:.3g}; "
            f"{d['rate_above_threshold']:.3f} above the threshold, p {d['rate_p_value']:.3g})")


def drift_watch(pipe, window: int | None, length: int) -> DriftWatch | None:
    """The drift watch over a run's scores (``window`` None: the default; 0: none). A window asked
    for that is longer than a source of known length is refused; a bundle whose threshold records
    no held-out percentiles (made before edgessl recorded them) gets none, with a note, and one with
    no detector (a classifier only) none."""
    config = drift_config(window)
    if config is None or pipe.detector is None:
        return None
    if window is not None and 0 < length < window:
        raise EdgesslError(f"--drift-window {window} is longer than the {length} inputs of this run; lower it "
                           "(or 0: no drift watch)")
    if not pipe.threshold_record.holdout_quantiles:
        print(f"edgessl: note: {NO_PERCENTILES}", file=sys.stderr)
        return None
    return DriftWatch(pipe.threshold_record, config)


def score_to_records(command: str, cfg: RecordOptions | RunOptions, source, pipe,
                     overlays: str | None = None) -> Outcome:
    """Score ``source`` through the one loop (``streams.runner``), a record per frame to ``cfg.out``;
    the summary (with the pipeline's identity) and its exit status: 1 when nothing could be scored."""
    from edgessl.edge_runtime.streams.runner import run_source
    from edgessl.edge_runtime.streams.sinks import JsonlSink, OverlaySink

    drift = drift_watch(pipe, cfg.drift_window, len(source))
    jsonl = JsonlSink(cfg.out, replace=cfg.force)
    try:
        summary = run_source(pipe, source, jsonl, OverlaySink(overlays) if overlays else None,
                             cfg, cfg.features, drift).to_dict()
    finally:
        jsonl.close()
    summary.update(out=cfg.out, backend=pipe.backend, precision=pipe.precision_key, bundle_hash=pipe.bundle.hash)
    if pipe.detector is None:
        summary["notes"].append("the bundle has a classifier and no anomaly detector: records carry class and "
                                "probabilities; score, raw_score, is_anomaly and threshold are null")
    for note in summary["notes"]:
        print(f"edgessl {command}: note: {note}", file=sys.stderr)
    status = EXIT_OK
    if summary["scored"] == 0:
        print(f"edgessl {command}: error: nothing could be scored ({summary['failed']} inputs failed; first: "
              f"{(summary['errors'] or ['no input'])[0]})", file=sys.stderr)
        status = EXIT_NOTHING
    lat = summary["latency_ms"]
    text = (f"edgessl {command}: {summary['scored']} scored, {summary['failed']} failed, {summary['dropped']} "
            f"dropped, {summary['anomalies']} anomalous; p50 {lat['p50']} ms, {summary['images_per_s']} images/s "
            f"({pipe.backend}, {pipe.precision_key}); records: {cfg.out or 'standard output'}")
    if summary["classes"]:
        text += "\n  classes: " + ", ".join(f"{k} {v}" for k, v in sorted(summary["classes"].items()))
    if summary["drift"] is not None:
        text += "\n" + drift_line(summary["drift"], f"last {summary['drift']['window']} scores")
    return Outcome(summary, text, status, stdout_taken=jsonl.to_stdout)


def _run(args: argparse.Namespace) -> Outcome:
    """Score every input of --source with the bundle: one JSON line per input (to --out, or standard
    output), optional overlay images, and a summary (counts, latency percentiles). Inputs that
    cannot be read become error records; the exit status is 1 only when nothing could be scored.

    Sources: an image, a folder, a glob ('imgs/*.png'), a MedMNIST .npz or MVTec-AD folder
    (--split), a video file, camera:N or an rtsp:// URL.
    """
    from edgessl.edge_runtime.streams.sources import open_source, source_paths

    cfg = config_from_args(RunConfig, args)
    check_outputs(cfg, source_paths(cfg.source), cfg.overlays)
    pipe = load_pipeline(cfg, cfg.threshold)
    if cfg.overlays and pipe.detector is None:
        raise EdgesslError("--overlays: the bundle has no anomaly detector (a classifier only), so no scores to draw; "
                           "drop --overlays")
    if cfg.overlays and not pipe.detector.has_maps:
        raise EdgesslError(f"--overlays: the bundle's {pipe.detector.kind} detector makes no anomaly maps; re-fit "
                           "with `edgessl fit --detector combined` (the default) or `--detector patch`, or drop "
                           "--overlays")
    source = open_source(cfg.source, cfg.split, pipe.pixel_limit(cfg.max_pixels))
    outcome = score_to_records("run", cfg, source, pipe, cfg.overlays)
    outcome.summary["overlays"] = cfg.overlays
    return outcome


RUN = Command(
    "run", _run, (RunConfig,), (
        Opt("--source", "what to score (see above)", required=True),
        SPLIT,
        Opt("--overlays", "write an overlay/heatmap image per input here", metavar="DIR"),
        *RECORDS, *SCORING, *BUNDLE),
    help="score images, folders, datasets, videos or a camera with a bundle (torch-free)")


def _replay(args: argparse.Namespace) -> Outcome:
    """Read a ROS 2 bag with rosbags and score every sensor_msgs/Image and CompressedImage of --topic
    (default: every image topic) exactly as the ROS node would, batched and prefetched like `edgessl
    run`: one JSON line per message (with topic, stamp_ns, log_time_ns) to --out or standard output,
    then a summary. A message that cannot be decoded becomes an error record.
    """
    from edgessl.edge_runtime.ros.bag import BagSource

    cfg = config_from_args(ReplayConfig, args)
    check_outputs(cfg, [Path(cfg.source)])
    pipe = load_pipeline(cfg, cfg.threshold)
    source = BagSource(cfg.source, cfg.topic, pipe.pixel_limit(cfg.max_pixels))
    outcome = score_to_records("replay", cfg, source, pipe)
    outcome.summary["topics"] = cfg.topic or "all image topics"
    return outcome


REPLAY = Command(
    "replay", _replay, (ReplayConfig,), (
        Opt("--source", "bag directory (with metadata.yaml), or an .mcap file", metavar="BAG", required=True),
        Opt("--topic", "image topics to score (default: every image topic)", metavar="TOPIC"),
        *RECORDS, *SCORING, *BUNDLE),
    help="score the images of a ROS 2 bag (MCAP or sqlite3) with a bundle, without ROS")

COMMANDS = (RUN, REPLAY)
