"""``adapt`` (torch-free): confirmed-normal images into the bundle's memory banks, as a sealed delta
beside it (``edge_runtime.streams.adapt``; docs/runtime.md)."""

from __future__ import annotations

import argparse

from edgessl.edge_runtime.streams.adapt import AdaptConfig

from .options import Command, Opt, Outcome, config_from_args
from .shared import BUNDLE_HELP, TRUST


def _adapt(args: argparse.Namespace) -> Outcome:
    """Add confirmed-normal images (--data: an image, a folder, a glob, a video) to the bundle's
    memory banks, at most --max-bank rows each, and re-derive the threshold of each ONNX precision
    (fp32 and each calibrated INT8 model) from the held-out normal scores the bundle keeps at it plus
    the new images' cross-fitted scores at it, at the bundle's target false-positive rate; a precision
    without kept scores is left out (running it with the delta is refused). Flagged images are
    judged at fp32. Written as a sealed delta, BUNDLE/adapt/, naming the base bundle's hash:
    the base and its signature stay as they were; run, replay, bench, evaluate and triage use the
    delta unless --no-delta; removing adapt/ rolls back. A second adapt adds to the first (--no-delta:
    start again from the base).

    Refused, with nothing changed: images the current detector flags as anomalous (unless
    --accept-flagged: they are normal, e.g. the new condition), an image that cannot be read, banks
    of --max-bank rows over --bank-mib MiB, a bundle without a memory-bank detector (knn, patch,
    combined) or without held-out normal scores.
    """
    from edgessl.edge_runtime.streams.adapt import adapt_bundle, adapt_line

    s = adapt_bundle(config_from_args(AdaptConfig, args))
    return Outcome(s, f"adapted {s['bundle']}: {adapt_line(s)}; delta {s['delta']} (remove it to roll back)")


ADAPT = Command("adapt", _adapt, (AdaptConfig,), (
    Opt("--bundle", BUNDLE_HELP, metavar="BUNDLE", required=True),
    Opt("--data", "confirmed-normal images: an image, a folder, a glob or a video", metavar="NORMAL_FRAMES",
        required=True),
    Opt("--max-bank", "the most rows each memory bank may hold", metavar="N"),
    Opt("--bank-mib", "the memory the device grants the banks (float32 rows at --max-bank); more is refused",
        metavar="MIB"),
    Opt("--folds", "cross-fitting folds of the new images (contiguous blocks in reading order)"),
    Opt("--accept-flagged", "add images the current detector flags as anomalous (they are confirmed normal); "
                            "they are named in the delta"),
    Opt("--batch-size", "images per inference call"),
    *TRUST),
    help="add confirmed-normal images to a bundle's memory bank and re-derive its threshold (a sealed delta)")

COMMANDS = (ADAPT,)
