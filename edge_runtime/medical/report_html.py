"""The triage report: one self-contained HTML file (no scripts, no external files, no matplotlib).

Thumbnails and heatmap overlays are inline base64 PNGs; the score distribution is an inline SVG
histogram with the decision threshold(s) drawn as vertical lines. Every study's row names its audit
entry (``data-audit-seq``, ``data-audit-sha256``, ``data-decision``, ``data-file-sha256``), for
``audit_evidence``.
"""

from __future__ import annotations

import base64
import html
import math
from pathlib import Path

import cv2
import numpy as np

from ..files import write_atomic
from ..heatmaps import overlay
from ..images import to_uint8
from .worklist import ABNORMAL, SCORED, TriageRecord

THUMB_PX = 64
NORMAL_COLOUR, ANOMALY_COLOUR, UNLABELLED_COLOUR = "#4c78a8", "#e45756", "#888888"


def thumbnail(img: np.ndarray, size: int = THUMB_PX) -> np.ndarray:
    """uint8, longer side ``size`` at most (area filter when shrinking; small images are kept as they are)."""
    img = to_uint8(img)
    h, w = img.shape[:2]
    scale = size / max(h, w)
    if scale < 1:
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return img


def png_data_uri(img: np.ndarray) -> str:
    """An image (grey or RGB uint8) as a ``data:image/png;base64,...`` URI."""
    bgr = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", bgr)
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def thumbnail_overlay(thumb: np.ndarray, heat: np.ndarray, vmax: float) -> np.ndarray:
    """The heatmap (normalised units, 0..``vmax`` -> blue..red) over the thumbnail, at its size; RGB uint8."""
    h, w = thumb.shape[:2]
    return overlay(thumb, cv2.resize(heat.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR), vmax=vmax)


def svg_histogram(scores: np.ndarray, anomalous: list[bool | None], lines: list[tuple[float, str, str]],
                  width: int = 640, height: int = 240, bins: int = 40) -> str:
    """Stacked histogram of ``scores`` (normal / anomalous / unlabelled) with labelled vertical ``lines``.

    The axis spans the 0.5th-99.5th percentiles of the scores and every line; scores beyond it are
    counted in the end bins, so a few outliers do not squash the plot.
    """
    scores = np.asarray(scores, np.float64)
    marks = [v for v, _, _ in lines]
    values = np.concatenate([np.percentile(scores, [0.5, 99.5]), marks]) if len(scores) else np.array([0.0, 1.0])
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    pad = 0.03 * (hi - lo)
    lo, hi = lo - pad, hi + pad
    edges = np.linspace(lo, hi, bins + 1)
    groups = [(NORMAL_COLOUR, "normal"), (ANOMALY_COLOUR, "anomalous"), (UNLABELLED_COLOUR, "unlabelled")]
    flags = np.array([2 if a is None else int(a) for a in anomalous], int)
    clipped = np.clip(scores, lo, hi)
    counts = [np.histogram(clipped[flags == g], edges)[0] for g in range(3)]
    top = max(1, int(np.sum(counts, axis=0).max()))
    ml, mr, mt, mb = 40, 10, 30, 36
    pw, ph = width - ml - mr, height - mt - mb

    def x(v: float) -> float:
        return ml + (v - lo) / (hi - lo) * pw

    def y(c: float) -> float:
        return mt + ph - c / top * ph

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="sans-serif" font-size="11" role="img" aria-label="score distribution">',
             f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#ccc"/>']
    base = np.zeros(bins)
    for g, (colour, _) in enumerate(groups):
        for i in np.flatnonzero(counts[g]):
            x0, x1 = x(edges[i]), x(edges[i + 1])
            y1, y0 = y(base[i]), y(base[i] + counts[g][i])
            parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                         f'height="{y1 - y0:.1f}" fill="{colour}"/>')
        base += counts[g]
    for v in np.linspace(lo, hi, 6):
        parts.append(f'<text x="{x(v):.1f}" y="{mt + ph + 14}" text-anchor="middle">{v:.2g}</text>')
    parts.append(f'<text x="{ml - 4}" y="{mt + 4}" text-anchor="end">{top}</text>'
                 f'<text x="{ml - 4}" y="{mt + ph}" text-anchor="end">0</text>'
                 f'<text x="{ml + pw / 2}" y="{height - 4}" text-anchor="middle">score (normalised: '
                 f'normal-only threshold = 1)</text>')
    for n, (v, label, colour) in enumerate(lines):  # labels inside the plot, staggered, on the roomier side
        right = x(v) < ml + pw * 0.7
        parts.append(f'<line x1="{x(v):.1f}" x2="{x(v):.1f}" y1="{mt}" y2="{mt + ph}" stroke="{colour}" '
                     f'stroke-width="2" stroke-dasharray="5,3"/>'
                     f'<text x="{x(v) + (4 if right else -4):.1f}" y="{mt + 14 + 14 * n}" fill="{colour}" '
                     f'text-anchor="{"start" if right else "end"}" font-weight="bold" stroke="#fff" stroke-width="3" '
                     f'paint-order="stroke">{html.escape(label)}</text>')
    legend = [(c, name) for g, (c, name) in enumerate(groups) if counts[g].any()]
    for n, (colour, name) in enumerate(legend):  # one row above the plot
        lx = ml + 90 * n
        parts.append(f'<rect x="{lx}" y="{mt - 18}" width="10" height="10" fill="{colour}"/>'
                     f'<text x="{lx + 14}" y="{mt - 9}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


CSS = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px;margin-bottom:4px} h2{font-size:17px;margin-top:28px}
table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ddd;padding:3px 6px;text-align:left}
th{background:#f0f0f0} tr.abnormal td{background:#fdecea} .num{text-align:right;font-variant-numeric:tabular-nums}
img.t{width:64px;height:64px;object-fit:contain;image-rendering:pixelated;background:#000}
.kv td:first-child{font-weight:bold;background:#f7f7f7} .warn{color:#b00020} code{font-size:11px}
"""


def _fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}g}" if isinstance(v, float) else html.escape(str(v))


def _kv_table(rows: list[tuple[str, object]]) -> str:
    return '<table class="kv">' + "".join(f"<tr><td>{html.escape(k)}</td><td>{_fmt(v)}</td></tr>"
                                          for k, v in rows) + "</table>"


def _audit_attributes(r: TriageRecord) -> str:
    """The row's audit entry, as the attributes ``audit_evidence`` reads."""
    return (f' data-audit-seq="{r.audit_seq}" data-audit-sha256="{r.audit_sha256}" '
            f'data-decision="{html.escape(r.decision)}" data-file-sha256="{r.file_sha256}"')


def _study_rows(records: list[TriageRecord], max_images: int, vmax: float) -> str:
    out = []
    for r in records:
        if r.status != SCORED:
            continue
        imgs = ""
        if r.rank is not None and r.rank <= max_images and r.thumbnail is not None:
            imgs = f'<img class="t" src="{png_data_uri(r.thumbnail)}" alt="study {r.rank}">'
            if r.heatmap is not None:
                imgs += f' <img class="t" src="{png_data_uri(thumbnail_overlay(r.thumbnail, r.heatmap, vmax))}" alt="heatmap">'
        frame = "" if r.frame is None else f"#{r.frame}"
        uids = "<br>".join(html.escape(u) for u in (r.study_uid, r.series_uid, r.instance_uid) if u)
        label = "" if r.label is None else html.escape(f"{r.label} ({'anomalous' if r.anomalous else 'normal'})")
        cls = ' class="abnormal"' if r.decision == ABNORMAL else ""
        out.append(f"<tr{cls}{_audit_attributes(r)}><td class=num>{r.rank}</td><td>{imgs}</td><td>{html.escape(Path(r.file).name)}"
                   f"{frame}</td><td><code>{uids}</code></td><td>{html.escape(r.modality)}</td>"
                   f"<td class=num>{r.score:.4f}</td><td>{r.decision}</td><td>{label}</td></tr>")
    return ("<table><tr><th>rank</th><th>image / heatmap</th><th>file</th><th>study / series / instance UID</th>"
            "<th>modality</th><th>score</th><th>decision</th><th>label</th></tr>" + "".join(out) + "</table>")


def _unscored(records: list[TriageRecord]) -> str:
    rows = [r for r in records if r.status != SCORED]
    if not rows:
        return "<p>Every input was scored.</p>"
    body = "".join(f"<tr{_audit_attributes(r)}><td>{html.escape(r.file)}{'' if r.frame is None else f'#{r.frame}'}</td>"
                   f"<td>{html.escape(r.reason)}</td></tr>" for r in rows)
    return (f'<p class="warn">{len(rows)} input(s) could not be scored; read them without triage.</p>'
            f"<table><tr><th>file</th><th>reason</th></tr>{body}</table>")


def render_report(records: list[TriageRecord], summary: dict, max_images: int = 200) -> str:
    """The whole report as an HTML string. ``summary`` holds the run's facts (see ``triage.run_triage``)."""
    scored = [r for r in records if r.status == SCORED]
    scores = np.array([r.score for r in scored], np.float64)
    maps = [r.heatmap for r in scored if r.heatmap is not None]
    vmax = float(np.percentile(np.concatenate([m.ravel() for m in maps]), 99)) if maps else 1.0
    lines = [(1.0, "normal-only threshold", "#555")]
    op = summary.get("operating_point")
    if op:
        lines.append((op["threshold"], op["name"], "#d62728"))
    hist = svg_histogram(scores, [r.anomalous for r in scored], lines)
    head = summary.get("audit_head")
    run = _kv_table([(k, summary.get(k)) for k in ("bundle", "bundle_hash", "manifest_version", "backend",
                                                   "precision", "threshold_kind", "threshold", "time",
                                                   "tool_version")]
                    + [("audit log head", head and f"entry {head['seq']}, sha256 {head['sha256']}")])
    drift = summary.get("drift")
    counts = _kv_table([("inputs", summary["n_records"]), ("scored", summary["n_scored"]),
                        ("not scored", summary["n_not_scored"]), ("flagged abnormal", summary["n_abnormal"]),
                        ("scores vs the held-out normal ones", drift and _drift_text(drift))])
    perf = [("validation sensitivity", op and op["sensitivity"]), ("validation specificity", op and op["specificity"]),
            ("validation set", op and f"{op['n_anomalous']} anomalous, {op['n_normal']} normal ({op['source']})")]
    test = summary.get("test")
    if test:
        perf += [("test sensitivity (this run)", test["sensitivity"]),
                 ("test specificity (this run)", test["specificity"]),
                 ("test AUROC (this run)", test.get("auroc")),
                 ("test set", f"{test['n_anomalous']} anomalous, {test['n_normal']} normal")]
    return (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>edgessl triage report</title>"
            f"<style>{CSS}</style></head><body>"
            f"<h1>Triage report</h1><p>Studies ranked from most to least abnormal by an edgessl anomaly "
            f"detector. A decision support aid, not a diagnosis.</p>"
            f"<h2>Summary</h2><div style='display:flex;gap:24px;flex-wrap:wrap'>{counts}{_kv_table(perf)}</div>"
            f"<h2>Score distribution</h2>{hist}"
            f"<h2>Not scored</h2>{_unscored(records)}"
            f"<h2>Worklist</h2><p>Images shown for the first {max_images} ranks; all studies are in "
            f"worklist.csv.</p>{_study_rows(records, max_images, vmax)}"
            f"<h2>Run</h2>{run}</body></html>\n")


def _drift_text(d: dict) -> str:
    """The batch drift test (``drift.batch_drift``) in one line."""
    verdict = ("DRIFTED: unlike the held-out normal studies (a new scanner, protocol or population; many "
               "abnormal studies do this too)" if d["alarm"] else "no drift found")
    return (f"{verdict} (KS {d['statistic']:.3f}, p {d['p_value']:.2g}; {d['rate_above_threshold']:.3f} above the "
            f"normal-only threshold, p {d['rate_p_value']:.2g})")


def write_report(records: list[TriageRecord], summary: dict, path: Path, max_images: int = 200) -> None:
    write_atomic(Path(path), render_report(records, summary, max_images).encode())
