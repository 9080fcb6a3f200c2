"""CLI registration of ``edgessl triage`` and ``edgessl operating-point`` (torch-free)."""

from __future__ import annotations

import argparse
import inspect

from ..medical.intended_use import SIZE_FACTOR
from ..data.source_text import SourceFlags
from ..medical.triage import OperatingPointConfig, TriageConfig
from .options import EXIT_NOTHING, EXIT_OK, Outcome, add_command, config_from_args, summary_lines


def _triage(args: argparse.Namespace) -> Outcome:
    """Score every study of --source with the bundle and write to --out:
      worklist.csv  ranked from most to least abnormal, with the decision and why any study
                    was not scored
      report.html   self-contained: thumbnails, heatmaps, score histogram with the threshold
      audit.jsonl   one line per study, appended (never truncated), hash-chained and anchored
                    (check it with `edgessl audit verify`)
    Decisions use the bundle's operating point for this precision (set with
    `edgessl operating-point`), else its normal-only threshold. Studies are scored in
    batches; a study's score depends on its own pixels only, never on its batch.

    Example: edgessl triage --bundle bundle/ --source scans/ --out triage/ --operating-point
    sensitivity=0.95
    """
    from ..medical.triage import run_triage

    s = run_triage(config_from_args(TriageConfig, args))
    text = summary_lines(f"edgessl triage: {s['n_scored']} of {s['n_records']} studies scored, {s['n_abnormal']} "
                         f"abnormal ({s['threshold_kind']}, {s['backend']}, {s['precision']})",
                         {**s, **(s["test"] or {})}, ("sensitivity", "specificity", "auroc", "worklist", "report",
                                                      "audit_log"))
    return Outcome(s, text, EXIT_OK if s["n_scored"] or not s["n_records"] else EXIT_NOTHING)


def _operating_point(args: argparse.Namespace) -> Outcome:
    """Score labelled validation images and store in the bundle (per precision) the largest threshold
    whose sensitivity on the validation anomalies is at least the target, with the specificity it
    gave. Also records the bundle's intended use: the modalities (--modality, else those of the
    validation DICOMs) and the reference image size (median longer side of the validation images;
    triage refuses images over {size_factor:g}x larger or smaller).

    Example: edgessl operating-point --bundle bundle/ --data pneumoniamnist.npz --normal-label 0
    --sensitivity 0.95
    """
    from ..medical.triage import set_operating_point

    s = set_operating_point(config_from_args(OperatingPointConfig, args))
    point = s["operating_point"]
    text = summary_lines(f"edgessl operating-point: stored in {s['bundle']} ({s['precision']})", point,
                         ("name", "sensitivity", "specificity", "threshold", "raw_threshold"))
    if s["skipped"]:
        text += f"\n  skipped: {len(s['skipped'])} (first: {s['skipped'][0]})"
    return Outcome(s, text)


def register(sub) -> dict[str, argparse.ArgumentParser]:
    return {
        **add_command(sub, "triage", _triage, TriageConfig,
                      help="rank studies (DICOM, PNG, .npz) by abnormality: worklist, HTML report, audit log"),
        **add_command(sub, "operating-point", _operating_point, OperatingPointConfig, SourceFlags,
                      help="set a triage operating point for a target sensitivity on labelled validation data",
                      description=inspect.cleandoc(_operating_point.__doc__).format(size_factor=SIZE_FACTOR)),
    }
