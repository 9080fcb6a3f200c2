"""``edgessl replay``: score a recorded ROS 2 bag (torch-free, no ROS install) through the same
loop as ``edgessl run``."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from ..config import BundleOptions, option
from ..streams.runner import RunOptions
from .options import Outcome, add_command, config_from_args
from .run import RecordOptions, load_pipeline, score_to_records


@dataclass
class ReplayConfig(RecordOptions, RunOptions, BundleOptions):
    source: str = option("", "bag directory (with metadata.yaml), or an .mcap file", metavar="BAG", required=True)
    topic: list[str] = option(help="image topics to score (default: every image topic)", metavar="TOPIC",
                              factory=list)


def _replay(args: argparse.Namespace) -> Outcome:
    """Read a ROS 2 bag with rosbags and score every sensor_msgs/Image and CompressedImage of --topic
    (default: every image topic) exactly as the ROS node would, batched and prefetched like `edgessl
    run`: one JSON line per message (with topic, stamp_ns, log_time_ns) to --out or standard output,
    then a summary. A message that cannot be decoded becomes an error record.
    """
    from ..ros.bag import BagSource

    cfg = config_from_args(ReplayConfig, args)
    pipe = load_pipeline(cfg, cfg.threshold)
    outcome = score_to_records("replay", cfg, BagSource(cfg.source, cfg.topic), pipe)
    outcome.summary["topics"] = cfg.topic or "all image topics"
    return outcome


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return add_command(
        sub, "replay", _replay, ReplayConfig,
        help="score the images of a ROS 2 bag (MCAP or sqlite3) with a bundle, without ROS")
