"""CLI registration of the runtime's own command, ``edgessl run`` (torch-free)."""

from __future__ import annotations

import argparse
import json
import sys

from ..backends import CHOICES


def add_trust_options(p: argparse.ArgumentParser) -> None:
    """``--public-key`` and ``--expect-sha256``: what a bundle must prove before it is used."""
    p.add_argument("--public-key", default=None, metavar="KEY.pub",
                   help="refuse the bundle unless it is signed with this Ed25519 key (`edgessl sign`)")
    p.add_argument("--expect-sha256", default=None, metavar="HASH",
                   help="refuse the bundle unless its sha256 (of manifest.json) is HASH")


def add_bundle_options(p: argparse.ArgumentParser, threads: bool = True) -> None:
    """``--bundle``, ``--backend``, ``--precision``, the trust options and (with ``threads``)
    ``--threads``: shared by every command that loads a bundle."""
    p.add_argument("--bundle", required=True, metavar="BUNDLE", help="bundle directory (from `edgessl export`)")
    p.add_argument("--backend", default="auto", choices=CHOICES,
                   help="inference backend; auto = best available: tensorrt > ort-tensorrt > ort-cuda > ort-cpu")
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"),
                   help="fp32, or int8 (the CPU model on ort-cpu, the Q/DQ TensorRT model on GPUs)")
    add_trust_options(p)
    if threads:
        p.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0: one per core)")


def load_pipeline(args: argparse.Namespace, threshold: float | None = None):
    """The ``Pipeline`` the shared options describe; says on stderr which backend ``auto`` took."""
    from ..backends.ort import OrtOptions
    from ..pipeline import Pipeline

    pipe = Pipeline.load(args.bundle, backend=args.backend, precision=args.precision, threshold=threshold,
                         options=OrtOptions(intra_op_threads=args.threads), public_key=args.public_key,
                         expect_sha256=args.expect_sha256)
    how = " (auto)" if args.backend == "auto" else ""
    print(f"edgessl: backend {pipe.backend}{how}, precision {pipe.precision_key}, bundle {pipe.bundle.hash[:12]}",
          file=sys.stderr)
    return pipe


def report_summary(command: str, summary: dict, pipe, to_stderr: bool, what: str) -> int:
    """Print a run's summary (with the pipeline's identity) and its notes; exit status 1 when
    nothing could be scored, else 0. ``to_stderr`` when the records went to standard output."""
    summary.update(backend=pipe.backend, precision=pipe.precision_key, bundle_hash=pipe.bundle.hash)
    print(json.dumps(summary), file=sys.stderr if to_stderr else sys.stdout)
    for note in summary.get("notes", []):
        print(f"edgessl {command}: note: {note}", file=sys.stderr)
    if summary["scored"] == 0:
        print(f"edgessl {command}: error: nothing could be scored ({summary['failed']} inputs failed; first: "
              f"{(summary['errors'] or [f'no {what}'])[0]})", file=sys.stderr)
        return 1
    return 0


def _run(args: argparse.Namespace) -> int:
    from ..streams.runner import RunOptions, run_source
    from ..streams.sinks import JsonlSink, OverlaySink
    from ..streams.sources import open_source

    pipe = load_pipeline(args, args.threshold)
    source = open_source(args.source, args.split)
    jsonl = JsonlSink(args.out)
    overlays = OverlaySink(args.overlays) if args.overlays else None
    try:
        summary = run_source(pipe, source, jsonl, overlays,
                             RunOptions(batch_size=args.batch_size, queue_size=args.queue_size)).to_dict()
    finally:
        jsonl.close()
    summary.update(out=args.out, overlays=args.overlays)
    return report_summary("run", summary, pipe, jsonl.to_stdout, "input")


def register(sub) -> dict[str, argparse.ArgumentParser]:
    p = sub.add_parser(
        "run", help="score images, folders, datasets, videos or a camera with a bundle (torch-free)",
        description="Score every input of --source with the bundle: one JSON line per input (to --out, or "
                    "standard output), optional overlay images, and a summary (counts, latency percentiles). "
                    "Inputs that cannot be read become error records; the exit status is non-zero only when "
                    "nothing could be scored.\n\nSources: an image, a folder, a glob ('imgs/*.png'), a MedMNIST "
                    ".npz or MVTec-AD folder (--split), a video file, camera:N or an rtsp:// URL.")
    add_bundle_options(p)
    p.add_argument("--source", required=True, help="what to score (see above)")
    p.add_argument("--split", default="test", choices=("train", "val", "test"), help="split of a .npz/MVTec source")
    p.add_argument("--batch-size", type=int, default=8, help="images per inference call for offline sources")
    p.add_argument("--queue-size", type=int, default=8, help="frames waiting at most (live sources drop the oldest)")
    p.add_argument("--threshold", type=float, default=None, help="override the decision threshold (normalised units)")
    p.add_argument("--out", default=None, metavar="results.jsonl", help="JSONL file (default: standard output)")
    p.add_argument("--overlays", default=None, metavar="DIR", help="write an overlay/heatmap image per input here")
    p.set_defaults(handler=_run)
    return {"run": p}
