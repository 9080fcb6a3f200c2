"""``calibration_report.json`` (everything measured) and ``calibration_summary.txt`` (for people)."""

from __future__ import annotations

import json
from pathlib import Path

from edgessl.edge_runtime.files import write_atomic

REPORT_FILE = "calibration_report.json"
SUMMARY_FILE = "calibration_summary.txt"


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def summary_text(report: dict) -> str:
    """A short table: one column per INT8 model, the gate's figures and verdict."""
    keys = list(report["targets"])
    first = report["targets"][keys[0]]["metrics"]
    cosines = [k for k in first if k.endswith(("_cosine_mean", "_cosine_p5"))]
    rows = [("images (calibration / gate)", lambda t: f"{report['calibration']['num_images']} / {t['metrics']['images']}"),
            *[(k.replace("_cosine_", " cosine "), lambda t, k=k: _fmt(t["metrics"][k])) for k in cosines],
            ("score Spearman", lambda t: _fmt(t["metrics"]["score_spearman"])),
            ("AUROC fp32 -> int8", lambda t: f"{_fmt(t['metrics']['auroc_fp32'])} -> {_fmt(t['metrics']['auroc_int8'])}"
             if "auroc_fp32" in t["metrics"] else "n/a (no labelled anomalies)"),
            ("threshold shift (fp32 units)", lambda t: f"{t['threshold_shift']:+.3f}"),
            ("decision agreement", lambda t: _fmt(t["decision_agreement"])),
            ("layers kept in float", lambda t: ", ".join(t["float_nodes"]) or "none"),
            ("gate", lambda t: "PASSED" if t["passed"] else "FAILED: " + "; ".join(t["failed"]))]
    width = max(len(r[0]) for r in rows) + 2
    col = max(18, *(len(k) + 2 for k in keys))
    cal = report["calibration"]
    lines = [f"edgessl INT8 calibration: method {cal['method']}, {cal['num_images']} normal images of {cal['data']}",
             "gate: " + ", ".join(f"{k} {v}" for k, v in report["gate_criteria"].items()), "",
             " " * width + "".join(k.ljust(col) for k in keys)]
    for label, get in rows:
        lines.append(label.ljust(width) + "".join(get(report["targets"][k]).ljust(col) for k in keys).rstrip())
    for key, t in report.get("earlier_targets", {}).items():
        lines.append(f"{key}: kept from the calibration of {t.get('calibrated', '?')} "
                     f"(gate {'passed' if t['passed'] else 'failed'}; see earlier_targets in {REPORT_FILE})")
    return "\n".join(lines) + "\n"


def write_report(bundle_dir: Path, report: dict) -> None:
    write_atomic(Path(bundle_dir) / REPORT_FILE, (json.dumps(report, indent=2, sort_keys=True) + "\n").encode())
    write_atomic(Path(bundle_dir) / SUMMARY_FILE, summary_text(report).encode())
