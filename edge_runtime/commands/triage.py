"""CLI registration of ``edgessl triage`` and ``edgessl operating-point`` (torch-free)."""

from __future__ import annotations

import argparse

from .run import add_bundle_options
from ..medical.intended_use import SIZE_FACTOR


def _triage(args: argparse.Namespace) -> int:
    from ..medical.triage import TriageConfig, print_json, run_triage

    summary = run_triage(TriageConfig(
        bundle=args.bundle, input=args.input, out=args.out, operating_point=args.operating_point,
        backend=args.backend, precision=args.precision, labels=args.labels, normal_label=args.normal_label,
        npz_split=args.split, report_images=args.report_images, public_key=args.public_key,
        expect_sha256=args.expect_sha256, audit_key=args.audit_key))
    print_json(summary)
    return 0 if summary["n_scored"] or not summary["n_records"] else 1


def _operating_point(args: argparse.Namespace) -> int:
    from ..medical.triage import OperatingPointConfig, print_json, set_operating_point

    print_json(set_operating_point(OperatingPointConfig(
        bundle=args.bundle, sensitivity=args.sensitivity, normal_label=args.normal_label, data=args.data,
        split=args.split, input=args.input or [], labels=args.labels, backend=args.backend,
        precision=args.precision, max_images=args.max_images, modality=args.modality, public_key=args.public_key,
        expect_sha256=args.expect_sha256)))
    return 0


def register(sub) -> dict[str, argparse.ArgumentParser]:
    t = sub.add_parser(
        "triage", help="rank studies (DICOM, PNG, .npz) by abnormality: worklist, HTML report, audit log",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score every study of --input with the bundle and write to --out:\n"
                    "  worklist.csv  ranked from most to least abnormal, with the decision and why any study\n"
                    "                was not scored\n"
                    "  report.html   self-contained: thumbnails, heatmaps, score histogram with the threshold\n"
                    "  audit.jsonl   one line per study, appended (never truncated), hash-chained and\n"
                    "                anchored (check it with `edgessl audit verify`)\n"
                    "Decisions use the bundle's operating point for this precision (set with\n"
                    "`edgessl operating-point`), else its normal-only threshold.\n\n"
                    "Example: edgessl triage --bundle bundle/ --input scans/ --out triage/ "
                    "--operating-point sensitivity=0.95")
    add_bundle_options(t, threads=False)
    t.add_argument("--input", required=True, nargs="+", metavar="PATH",
                   help="DICOM/image/.npz files, folders (searched recursively) or quoted globs")
    t.add_argument("--out", required=True, metavar="REPORT_DIR", help="where the worklist, report and audit log go")
    t.add_argument("--operating-point", default="auto", metavar="sensitivity=S|auto|none",
                   help="auto: the bundle's point with the highest sensitivity for this precision, or the "
                        "normal-only threshold if it has none; none: the normal-only threshold (default: auto)")
    t.add_argument("--labels", metavar="CSV", help="file,label CSV of known labels, to report test sensitivity")
    t.add_argument("--normal-label", metavar="L", help="the label of normal studies (enables test sensitivity)")
    t.add_argument("--split", default="test", help="split read from a MedMNIST .npz input (default: test)")
    t.add_argument("--audit-key", metavar="FILE",
                   help="secret key file (32+ random bytes): every audit line carries an HMAC, so rewriting the "
                        "whole log is detected too (`edgessl audit verify --audit-key FILE`)")
    t.add_argument("--report-images", type=int, default=200, help="thumbnails for this many top ranks (default: 200)")
    t.set_defaults(handler=_triage)

    o = sub.add_parser(
        "operating-point", help="set a triage operating point for a target sensitivity on labelled validation data",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Score labelled validation images and store in the bundle (per precision) the largest\n"
                    "threshold whose sensitivity on the validation anomalies is at least the target, with the\n"
                    "specificity it gave. Also records the bundle's intended use: the modalities (--modality,\n"
                    "else those of the validation DICOMs) and the reference image size (median longer side of\n"
                    f"the validation images; triage refuses images over {SIZE_FACTOR:g}x larger or smaller).\n\n"
                    "Example: edgessl operating-point --bundle bundle/ --data pneumoniamnist.npz --normal-label 0 "
                    "--sensitivity 0.95")
    add_bundle_options(o, threads=False)
    o.add_argument("--sensitivity", required=True, metavar="S", help="target sensitivity, e.g. 0.95")
    o.add_argument("--normal-label", required=True, metavar="L", help="the label of normal images")
    o.add_argument("--data", help="validation source: a MedMNIST .npz, an ImageFolder or MVTec-AD directory")
    o.add_argument("--split", default="val", help="split of --data (default: val)")
    o.add_argument("--input", nargs="+", metavar="PATH", help="validation files/folders/globs (with --labels)")
    o.add_argument("--labels", metavar="CSV", help="file,label CSV for --input")
    o.add_argument("--max-images", type=int, default=0, help="a deterministic random subset of --data (0: all)")
    o.add_argument("--modality", nargs="+", metavar="M", help="DICOM modalities the bundle is for, e.g. CR DX")
    o.set_defaults(handler=_operating_point)
    return {"triage": t, "operating-point": o}
