"""CLI registration of ``edgessl replay``: score a recorded ROS 2 bag (torch-free, no ROS install)."""

from __future__ import annotations

import argparse

from .run import add_bundle_options, load_pipeline, report_summary


def _replay(args: argparse.Namespace) -> int:
    from ..ros.bag import replay_bag
    from ..streams.sinks import JsonlSink

    pipe = load_pipeline(args, args.threshold)
    jsonl = JsonlSink(args.out)
    try:
        summary = replay_bag(pipe, args.bag, args.topic or (), jsonl, with_features=args.features).to_dict()
    finally:
        jsonl.close()
    summary.update(topics=args.topic or "all image topics", out=args.out)
    return report_summary("replay", summary, pipe, jsonl.to_stdout, "image message")


def register(sub) -> dict[str, argparse.ArgumentParser]:
    p = sub.add_parser(
        "replay", help="score the images of a ROS 2 bag (MCAP or sqlite3) with a bundle, without ROS",
        description="Read a ROS 2 bag with rosbags and score every sensor_msgs/Image and CompressedImage of "
                    "--topic (default: every image topic) exactly as the ROS node would: one JSON line per "
                    "message (with topic, stamp_ns, log_time_ns) to --out or standard output, then a summary. "
                    "A message that cannot be decoded becomes an error record.")
    p.add_argument("bag", help="bag directory (with metadata.yaml), or an .mcap file")
    add_bundle_options(p)
    p.add_argument("--topic", action="append", metavar="TOPIC", help="image topic to score (repeatable)")
    p.add_argument("--threshold", type=float, default=None, help="override the decision threshold (normalised units)")
    p.add_argument("--features", action="store_true", help="add each image's embedding to its record")
    p.add_argument("--out", default=None, metavar="results.jsonl", help="JSONL file (default: standard output)")
    p.set_defaults(handler=_replay)
    return {"replay": p}
