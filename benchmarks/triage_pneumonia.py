"""Triage figures on PneumoniaMNIST, through DICOM: operating points on the validation split, then the
test split written as DICOM files and triaged. Prints one table; writes the reports under --out.

    python benchmarks/triage_pneumonia.py --bundle BUNDLE --out /tmp/triage_pneumonia [--sensitivity 0.9 0.95]

The bundle must be fitted on PneumoniaMNIST (normal label 0); the script adds its operating points to
it (sealed). The 624 test images are written as DICOM in four encodings that decode to the original
pixels (MONOCHROME1 8-bit, 16-bit, 12-bit signed with rescale, and every 4th as PNG) with a
file,label CSV. With chromium installed, the last report is also rendered to report.png.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' DICOM writer

from dicom_factory import write_dicom  # noqa: E402

from edgessl.cli import main as cli  # noqa: E402

NPZ = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"


def write_studies(out: Path) -> Path:
    """The test split as DICOM/PNG files in ``out/studies`` and ``out/labels.csv``."""
    data = np.load(NPZ)
    studies = out / "studies"
    rows = []
    for i, (img, label) in enumerate(zip(data["test_images"], data["test_labels"][:, 0])):
        path = studies / f"img{i:04d}.dcm"
        kind = i % 4
        if kind == 0:
            write_dicom(path, 255 - img.astype(int), photometric="MONOCHROME1", window=(128.0, 256.0))
        elif kind == 1:
            write_dicom(path, img.astype(int) * 257, bits_stored=16, window=(32768.0, 65536.0))
        elif kind == 2:
            write_dicom(path, img.astype(int) * 16 - 2048, bits_stored=12, signed=True, slope=0.0625,
                        intercept=128.0, window=(128.0, 256.0))
        else:
            path = path.with_suffix(".png")
            cv2.imwrite(str(path), img)
        rows.append((path.name, int(label)))
    with open(out / "labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("file", "label"), *rows])
    return studies


def run_cli(args: list[str]) -> dict:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli([*args, "--json"])
    if rc != 0:
        raise SystemExit(f"edgessl {' '.join(args)} failed ({rc})")
    return json.loads(buf.getvalue())


def screenshot(report: Path, png: Path) -> bool:
    browser = shutil.which("chromium")
    if browser is None:
        return False
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={png.parent / 'chromium-profile'}", f"--screenshot={png}",
                    "--window-size=1280,1700", report.as_uri()], check=True, capture_output=True, timeout=120)
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--sensitivity", nargs="+", default=["0.9", "0.95"])
    args = ap.parse_args()
    if not NPZ.is_file():
        raise SystemExit(f"PneumoniaMNIST not found at {NPZ}")
    out = Path(args.out)
    studies = write_studies(out)
    rows = []
    for s in args.sensitivity:
        op = run_cli(["operating-point", "--bundle", args.bundle, "--data", str(NPZ), "--normal-label", "0",
                      "--sensitivity", s, "--modality", "CR"])["operating_point"]
        tri = run_cli(["triage", "--bundle", args.bundle, "--source", str(studies), "--out", str(out / f"sens{s}"),
                       "--labels", str(out / "labels.csv"), "--normal-label", "0",
                       "--operating-point", f"sensitivity={s}"])
        t = tri["test"]
        rows.append((s, op["sensitivity"], op["specificity"], t["sensitivity"], t["specificity"], t["auroc"],
                     tri["n_abnormal"], tri["n_scored"]))
    print("| target sensitivity | validation sensitivity | validation specificity | test sensitivity | "
          "test specificity | test AUROC | flagged / scored |")
    print("|---|---|---|---|---|---|---|")
    for s, vs, vp, ts, tp, auc, flagged, scored in rows:
        print(f"| {s} | {vs:.3f} | {vp:.3f} | {ts:.3f} | {tp:.3f} | {auc:.3f} | {flagged} / {scored} |")
    last = out / f"sens{args.sensitivity[-1]}"
    if screenshot(last / "report.html", out / "report.png"):
        print(f"screenshot: {out / 'report.png'}")


if __name__ == "__main__":
    main()
