"""The DICOM node's throughput and its C-STORE-to-SR-acknowledged latency, on this machine.

    .venv/bin/python benchmarks/bench_dicom_node.py [--studies 200] [--paced 100] [--size 256]
                                                    [--transfer-syntax native|j2k] [--bundle BUNDLE | --work /tmp/edgessl_bench_dicom]
                                                    [--precision fp32|int8] [--batch-size 8]

Without --bundle, builds (once, in --work) a 64 px bundle (``timing_bundle.py``: grey, random-init
resnet18, fit's default detector -- ``combined``, which makes maps, so every study also gets an
overlay -- fitted on the digits' class 0). Studies: PneumoniaMNIST test images (the digits when
shared/data is absent) resized to --size px as 12-bit CR DICOM, one instance per study, native or
JPEG 2000 lossless. The node is the real command (``edgessl dicom-node`` as a process: spool with
fsync, audit log, SR + overlay to a destination); the destination is a pynetdicom Storage SCP in
this process that stamps each SR as it acknowledges it.

* **burst**: --studies studies sent back to back over one association (a modality pushing a
  worklist); throughput = studies / (first C-STORE request -> last SR acknowledged); latency per
  study = its C-STORE request -> its SR acknowledged (so it includes the queue).
* **paced**: --paced studies one at a time, each sent once the previous one's SR is acknowledged:
  the latency of a study alone (p50, p99).

Prints one table and, with --json, the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the tests' DICOM writer and network helpers

from dicom_factory import recode, write_dicom  # noqa: E402
from dicom_net import echo, free_port  # noqa: E402
from timing_bundle import timing_bundle  # noqa: E402

NPZ = ROOT.parent / "shared" / "data" / "pneumoniamnist" / "pneumoniamnist.npz"
SR_CLASS, SC_CLASS = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"


def source_images(n: int, size: int) -> list[np.ndarray]:
    if NPZ.is_file():
        imgs = np.load(NPZ)["test_images"]
    else:
        from edgessl.edge_runtime.data.datasets import open_dataset

        digits = open_dataset("digits", "test")
        imgs = [digits.image(i) for i in range(len(digits))]
    return [cv2.resize(imgs[i % len(imgs)], (size, size), interpolation=cv2.INTER_CUBIC) for i in range(n)]


def write_studies(folder: Path, n: int, size: int, syntax: str) -> list[Path]:
    from pydicom.uid import JPEG2000Lossless

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(source_images(n, size)):
        path = folder / f"study{i:04d}.dcm"
        write_dicom(path, img.astype(np.int64) * 16, bits_stored=12, modality="CR")
        if syntax == "j2k":
            recode(path, path, JPEG2000Lossless)
        paths.append(path)
    return paths


class Pacs:
    """The destination: acknowledges every object and stamps each SR (by its source instance)."""

    def __init__(self):
        from pynetdicom import AE, evt

        self.acked: dict[str, float] = {}
        self.objects = 0
        self.cond = threading.Condition()
        ae = AE("PACS")
        for uid in (SR_CLASS, SC_CLASS):
            ae.add_supported_context(uid, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self.server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self.server.server_address[1]

    def _store(self, event) -> int:
        ds = event.dataset
        with self.cond:
            self.objects += 1
            if ds.SOPClassUID == SR_CLASS:
                source = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
                self.acked[source.ReferencedSOPSequence[0].ReferencedSOPInstanceUID] = time.perf_counter()
                self.cond.notify_all()
        return 0x0000

    def wait(self, uids: list[str], timeout: float) -> None:
        with self.cond:
            self.cond.wait_for(lambda: all(u in self.acked for u in uids), timeout)


def sender(port: int, files: list[Path]):
    from pydicom import dcmread
    from pynetdicom import AE

    datasets = [dcmread(f) for f in files]
    ae = AE("MODALITY")
    for cls, ts in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(cls, ts)
    assoc = ae.associate("127.0.0.1", port, ae_title="EDGESSL")
    if not assoc.is_established:
        raise SystemExit("the node refused the association")
    return assoc, datasets


def percentiles(ms: list[float]) -> tuple[float, float, float]:
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), float(np.max(ms))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--studies", type=int, default=200)
    ap.add_argument("--paced", type=int, default=100)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--transfer-syntax", choices=("native", "j2k"), default="native")
    ap.add_argument("--bundle")
    ap.add_argument("--work", default="/tmp/edgessl_bench_dicom")
    ap.add_argument("--precision", choices=("fp32", "int8"), default="fp32")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = Path(args.work)
    bundle = Path(args.bundle) if args.bundle else timing_bundle(work / "bundle64", 64, 1, int8=args.precision == "int8")[0]
    files = write_studies(work / f"studies_{args.transfer_syntax}_{args.size}", args.studies + args.paced, args.size,
                          args.transfer_syntax)
    from pydicom import dcmread

    uids = [str(dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    out = work / "node"
    shutil.rmtree(out, ignore_errors=True)
    pacs, port = Pacs(), free_port()
    cmd = [sys.executable, "-m", "edgessl", "dicom-node", "--bundle", str(bundle), "--out", str(out), "--port", str(port),
           "--bind", "127.0.0.1", "--forward", f"PACS@127.0.0.1:{pacs.port}", "--backend", "ort-cpu",
           "--precision", args.precision, "--batch-size", str(args.batch_size), "--json"]
    node = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        deadline = time.monotonic() + 120
        while not _answers(port):
            if node.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("dicom-node did not start")
            time.sleep(0.2)
        burst_files, burst_uids = files[: args.studies], uids[: args.studies]
        assoc, datasets = sender(port, burst_files)
        sent: dict[str, float] = {}
        t0 = time.perf_counter()
        for uid, ds in zip(burst_uids, datasets):
            sent[uid] = time.perf_counter()
            assoc.send_c_store(ds)
        assoc.release()
        t_sent = time.perf_counter()
        pacs.wait(burst_uids, 600)
        t_end = max(pacs.acked[u] for u in burst_uids)
        burst = [1e3 * (pacs.acked[u] - sent[u]) for u in burst_uids]
        paced = []
        assoc, datasets = sender(port, files[args.studies:])
        for uid, ds in zip(uids[args.studies:], datasets):
            t = time.perf_counter()
            assoc.send_c_store(ds)
            pacs.wait([uid], 60)
            paced.append(1e3 * (pacs.acked[uid] - t))
        assoc.release()
    finally:
        node.send_signal(signal.SIGTERM)
        summary = json.loads(node.communicate(timeout=120)[0].decode().strip().splitlines()[-1])
        pacs.server.shutdown()
    figures = {"studies": args.studies, "size": args.size, "transfer_syntax": args.transfer_syntax,
               "precision": args.precision, "batch_size": args.batch_size, "bundle": str(bundle),
               "throughput_studies_per_s": args.studies / (t_end - t0), "send_s": t_sent - t0,
               "burst_latency_ms": dict(zip(("p50", "p99", "max"), percentiles(burst))),
               "paced_latency_ms": dict(zip(("p50", "p99", "max"), percentiles(paced))), "paced": args.paced,
               "objects_acknowledged": pacs.objects, "node": {k: summary[k] for k in
                                                              ("received", "scored", "acknowledged", "send_failures")}}
    if args.json:
        print(json.dumps(figures))
        return
    b, p = figures["burst_latency_ms"], figures["paced_latency_ms"]
    print(f"dicom-node, {args.size} px 12-bit CR ({args.transfer_syntax}), 64 px bundle ({args.precision}), "
          f"batch {args.batch_size}, {os.cpu_count()} CPUs")
    print("| run | studies | studies/s | C-STORE -> SR acknowledged p50 | p99 | max |")
    print("|---|---|---|---|---|---|")
    print(f"| burst (one association) | {args.studies} | {figures['throughput_studies_per_s']:.1f} | {b['p50']:.0f} ms | "
          f"{b['p99']:.0f} ms | {b['max']:.0f} ms |")
    print(f"| paced (one at a time) | {args.paced} | - | {p['p50']:.0f} ms | {p['p99']:.0f} ms | {p['max']:.0f} ms |")
    print(f"node: {figures['node']}; {pacs.objects} objects acknowledged by the destination")


def _answers(port: int) -> bool:
    try:
        return echo(port)
    except (OSError, RuntimeError):
        return False


if __name__ == "__main__":
    main()
