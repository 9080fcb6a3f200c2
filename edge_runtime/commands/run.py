"""``edgessl run`` (torch-free), and what every command that scores a source shares: loading the
pipeline, the records, the summary and its exit status."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from ..config import BundleOptions, option
from ..data.datasets import SPLITS
from ..streams.runner import RunOptions
from .options import EXIT_NOTHING, EXIT_OK, Outcome, add_command, config_from_args


@dataclass
class RecordOptions:
    """Where a scoring command's records go, what they hold and what decides."""

    threshold: float | None = option(None, "override the decision threshold (normalised units)")
    out: str | None = option(None, "JSONL file (default: standard output)", metavar="results.jsonl")
    features: bool = option(False, "add each image's embedding to its record")


@dataclass
class RunConfig(RecordOptions, RunOptions, BundleOptions):
    source: str = option("", "what to score (see above)", required=True)
    split: str = option("test", "split of a .npz/MVTec source", choices=SPLITS)
    overlays: str | None = option(None, "write an overlay/heatmap image per input here", metavar="DIR")


def load_pipeline(cfg: BundleOptions, threshold: float | None = None):
    """The ``Pipeline`` the bundle options describe; says on stderr which backend ``auto`` took."""
    pipe = cfg.pipeline(threshold)
    how = " (auto)" if cfg.backend == "auto" else ""
    print(f"edgessl: backend {pipe.backend}{how}, precision {pipe.precision_key}, bundle {pipe.bundle.hash[:12]}",
          file=sys.stderr)
    return pipe


def score_to_records(command: str, cfg, source, pipe, overlays: str | None = None) -> Outcome:
    """Score ``source`` through the one loop (``streams.runner``), a record per frame to ``cfg.out``;
    the summary (with the pipeline's identity) and its exit status: 1 when nothing could be scored.
    ``cfg`` is a ``RecordOptions`` and a ``RunOptions``."""
    from ..streams.runner import run_source
    from ..streams.sinks import JsonlSink, OverlaySink

    jsonl = JsonlSink(cfg.out)
    try:
        summary = run_source(pipe, source, jsonl, OverlaySink(overlays) if overlays else None,
                             cfg, cfg.features).to_dict()
    finally:
        jsonl.close()
    summary.update(out=cfg.out, backend=pipe.backend, precision=pipe.precision_key, bundle_hash=pipe.bundle.hash)
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
    return Outcome(summary, text, status, stdout_taken=jsonl.to_stdout)


def _run(args: argparse.Namespace) -> Outcome:
    """Score every input of --source with the bundle: one JSON line per input (to --out, or standard
    output), optional overlay images, and a summary (counts, latency percentiles). Inputs that
    cannot be read become error records; the exit status is 1 only when nothing could be scored.

    Sources: an image, a folder, a glob ('imgs/*.png'), a MedMNIST .npz or MVTec-AD folder
    (--split), a video file, camera:N or an rtsp:// URL.
    """
    from ..streams.sources import open_source

    cfg = config_from_args(RunConfig, args)
    pipe = load_pipeline(cfg, cfg.threshold)
    outcome = score_to_records("run", cfg, open_source(cfg.source, cfg.split), pipe, cfg.overlays)
    outcome.summary["overlays"] = cfg.overlays
    return outcome


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return add_command(
        sub, "run", _run, RunConfig,
        help="score images, folders, datasets, videos or a camera with a bundle (torch-free)")
