"""``triage`` and ``operating-point`` (torch-free): their options and handlers."""

from __future__ import annotations

import argparse
import inspect

from edgessl.edge_runtime.data.datasets import SPLITS
from edgessl.edge_runtime.medical.intended_use import SIZE_FACTOR
from edgessl.edge_runtime.medical.triage import OperatingPointConfig, TriageConfig

from .options import EXIT_NOTHING, EXIT_OK, Command, Opt, Outcome, config_from_args, selected_data, summary_lines
from .run import drift_line
from .shared import BUNDLE, SCORING, SELECTION

SOURCES_HELP = "DICOM/image/.npz files, folders (searched recursively) or quoted globs"
OPERATING_POINT_OPT = Opt("--operating-point", "auto: the bundle's point with the highest sensitivity for this "
                                               "precision, or the normal-only threshold if it has none; none: the "
                                               "normal-only threshold", metavar="sensitivity=S|auto|none")
AUDIT_KEY = Opt("--audit-key", "secret key file (32+ random bytes): every audit line carries an HMAC, so rewriting "
                               "the whole log is detected too (`edgessl audit verify --audit-key FILE`)",
                metavar="FILE")
REPORT_IMAGES = Opt("--report-images", "thumbnails for this many top ranks")


def _triage(args: argparse.Namespace) -> Outcome:
    """Score every study of --source with the bundle and write to --out:
      worklist.csv  ranked from most to least abnormal, with the decision and why any study
                    was not scored
      report.html   self-contained: thumbnails, heatmaps, score histogram with the threshold
      audit.jsonl   one line per study, appended (never truncated), hash-chained and anchored
                    (check it with `edgessl audit verify`)
    and, with --dicom-out DIR, each DICOM instance's results as DICOM objects that reference it.
    Decisions use the bundle's operating point for this precision (set with
    `edgessl operating-point`), else its normal-only threshold. Studies are scored in
    batches; a study's score depends on its own pixels only, never on its batch.

    Example: edgessl triage --bundle bundle/ --source scans/ --out triage/ --operating-point
    sensitivity=0.95
    """
    from edgessl.edge_runtime.medical.triage import run_triage

    s = run_triage(config_from_args(TriageConfig, args))
    text = summary_lines(f"edgessl triage: {s['n_scored']} of {s['n_records']} studies scored, {s['n_abnormal']} "
                         f"abnormal ({s['threshold_kind']}, {s['backend']}, {s['precision']})",
                         {**s, **(s["test"] or {})}, ("sensitivity", "specificity", "auroc", "worklist", "report",
                                                      "audit_log"))
    if s["drift"] is not None:
        text += "\n" + drift_line(s["drift"], f"all {s['drift']['window']} scores against the held-out normal ones")
    return Outcome(s, text, EXIT_OK if s["n_scored"] or not s["n_records"] else EXIT_NOTHING)


TRIAGE = Command(
    "triage", _triage, (TriageConfig,), (
        Opt("--source", SOURCES_HELP, metavar="PATH", required=True),
        Opt("--out", "where the worklist, report and audit log go", metavar="REPORT_DIR", required=True),
        OPERATING_POINT_OPT,
        Opt("--labels", "file,label CSV of known labels, to report test sensitivity", metavar="CSV"),
        Opt("--normal-label", "the label of normal studies (enables test sensitivity)", metavar="L"),
        Opt("--split", "split read from a MedMNIST .npz input", choices=SPLITS),
        REPORT_IMAGES,
        AUDIT_KEY,
        Opt("--dicom-out", "write each scored DICOM instance's results here as DICOM: a Comprehensive SR and, when "
                           "the bundle makes maps, heatmap overlays (as `edgessl dicom-node` sends them)",
            metavar="DIR"),
        *SCORING, *BUNDLE),
    help="rank studies (DICOM, PNG, .npz) by abnormality: worklist, HTML report, audit log")


def _operating_point(args: argparse.Namespace) -> Outcome:
    """Score labelled validation images and store in the bundle (per precision) the largest threshold
    whose sensitivity on the validation anomalies is at least the target, with the specificity it
    gave. Also records the bundle's intended use: the modalities (--modality, else those of the
    validation DICOMs) and the reference image size (median longer side of the validation images;
    triage refuses images over {size_factor:g}x larger or smaller).

    Example: edgessl operating-point --bundle bundle/ --data pneumoniamnist.npz --normal-label 0
    --sensitivity 0.95
    """
    from edgessl.edge_runtime.medical.triage import set_operating_point

    s = set_operating_point(config_from_args(OperatingPointConfig, args, data=selected_data(args)))
    point = s["operating_point"]
    text = summary_lines(f"edgessl operating-point: stored in {s['bundle']} ({s['precision']})", point,
                         ("name", "sensitivity", "specificity", "threshold", "raw_threshold"))
    if s["skipped"]:
        text += f"\n  skipped: {len(s['skipped'])} (first: {s['skipped'][0]})"
    return Outcome(s, text)


OPERATING_POINT = Command(
    "operating-point", _operating_point, (OperatingPointConfig,), (
        Opt("--sensitivity", "target sensitivity, e.g. 0.95", metavar="S", required=True),
        Opt("--normal-label", "the label of normal images", metavar="L", required=True),
        Opt("--data", "validation dataset: a MedMNIST .npz, an ImageFolder or MVTec-AD directory"),
        Opt("--split", "split of --data", choices=SPLITS),
        Opt("--source", f"validation {SOURCES_HELP} (with --labels)", metavar="PATH"),
        Opt("--labels", "file,label CSV for --source", metavar="CSV"),
        Opt("--max-images", "a deterministic random subset of --data (0: all)"),
        Opt("--modality", "DICOM modalities the bundle is for, e.g. CR DX (default: those of the validation "
                          "DICOMs)", metavar="M"),
        *SCORING, *BUNDLE, *SELECTION),
    help="set a triage operating point for a target sensitivity on labelled validation data",
    description=inspect.cleandoc(_operating_point.__doc__).format(size_factor=SIZE_FACTOR))

COMMANDS = (TRIAGE, OPERATING_POINT)
