"""``calibration_report.json`` (everything measured) and ``calibration_summary.txt`` (for people)."""

from __future__ import annotations

import json
from pathlib import Path

from edgessl.edge_runtime.files import write_atomic

REPORT_FILE = "calibration_report.json"
SUMMARY_FILE = "calibration_summary.txt"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _bias_change(t: dict) -> str:
    """What keeping the biases in float changed (cosine, AUROC), or n/a for a model with int32 biases."""
    f = t.get("float_biases")
    if f is None:
        return "n/a"
    change = f["change"]
    auroc = f", AUROC {change['auroc_int8']:+.4f}" if "auroc_int8" in change else ""
    return f"cosine {change['embedding_cosine_mean']:+.5f}{auroc}"


def summary_text(report: dict) -> str:
    """A short table: one column per INT8 model, the gate's figures and verdict."""
    keys = list(report["targets"])
    first = report["targets"][keys[0]]["metrics"]
    cosines = [k for k in first if k.endswith(("_cosine_mean", "_cosine_p5"))]
    rows = [("images (calibration / gate)", lambda t: f"{report['calibration']['num_images']} / {t['metrics']['images']}"),
            *[(k.replace("_cosine_", " cosine "), lambda t, k=k: _fmt(t["metrics"][k])) for k in cosines],
            ("score Spearman", lambda t: _fmt(t["metrics"].get("score_spearman", "n/a (no detector)"))),
            ("AUROC fp32 -> int8", lambda t: f"{_fmt(t['metrics']['auroc_fp32'])} -> {_fmt(t['metrics']['auroc_int8'])}"
             if "auroc_fp32" in t["metrics"] else "n/a (no labelled anomalies)"),
            ("accuracy fp32 -> int8", lambda t: f"{_fmt(t['metrics']['accuracy_fp32'])} -> "
             f"{_fmt(t['metrics']['accuracy_int8'])}" if "accuracy_fp32" in t["metrics"] else "n/a (no classifier)"),
            ("positive-class AUROC fp32 -> int8", lambda t: f"{_fmt(t['metrics']['positive_auroc_fp32'])} -> "
             f"{_fmt(t['metrics']['positive_auroc_int8'])}" if "positive_auroc_fp32" in t["metrics"] else "n/a"),
            ("threshold shift (fp32 units)", lambda t: "n/a" if t["threshold_shift"] is None
             else f"{t['threshold_shift']:+.3f}"),
            ("decision agreement", lambda t: "n/a" if t["decision_agreement"] is None else _fmt(t["decision_agreement"])),
            ("float biases vs int32 biases", _bias_change),
            ("layers kept in float", lambda t: ", ".join(t["float_nodes"]) or "none"),
            ("gate", lambda t: "PASSED" if t["passed"] else "FAILED: " + "; ".join(t["failed"]))]
    width = max(len(r[0]) for r in rows) + 2
    cells = [[get(report["targets"][k]) for k in keys] for _, get in rows]
    col = max(18, *(len(k) + 2 for k in keys), *(len(c) + 2 for row in cells[:-2] for c in row))  # the last two run on
    cal = report["calibration"]
    lines = [f"edgessl INT8 calibration: method {cal['method']}, {cal['num_images']} images of {cal['data']} "
             f"({cal['split']})",
             "gate: " + ", ".join(f"{k} {v}" for k, v in report["gate_criteria"].items()), "",
             " " * width + "".join(k.ljust(col) for k in keys)]
    for (label, _), row in zip(rows, cells):
        lines.append(label.ljust(width) + "".join(c.ljust(col) for c in row).rstrip())
    for key, t in report.get("earlier_targets", {}).items():
        lines.append(f"{key}: kept from the calibration of {t.get('calibrated', '?')} "
                     f"(gate {'passed' if t['passed'] else 'failed'}; see earlier_targets in {REPORT_FILE})")
    return "\n".join(lines) + "\n"


def write_report(bundle_dir: Path, report: dict) -> None:
    write_atomic(Path(bundle_dir) / REPORT_FILE, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    write_atomic(Path(bundle_dir) / SUMMARY_FILE, summary_text(report).encode())
