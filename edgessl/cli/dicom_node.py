"""``dicom-node`` (torch-free): a DICOM Storage SCP that triages what it receives; its options and handler."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from edgessl.edge_runtime.medical.dicom_node import NodeConfig

from .medical import AUDIT_KEY, OPERATING_POINT_OPT, REPORT_IMAGES
from .options import Command, Opt, Outcome, config_from_args, summary_lines
from .shared import BUNDLE, MAX_PIXELS


def _dicom_node(args: argparse.Namespace) -> Outcome:
    """A DICOM node next to the scanner: a Storage SCP (C-ECHO, C-STORE) that triages every image
    it receives with the bundle and sends the results back as DICOM (a Comprehensive SR per
    instance and, when the bundle makes maps, heatmap overlays, in the source's study) to --forward.
    Nothing is lost: an instance is on disk in --out's spool before it is acknowledged, a failed
    send is retried with backoff, a restart resumes from the spool. In --out: spool/,
    worklist.csv (with each instance's state), report.html and audit.jsonl (every association,
    instance, decision and result; `edgessl audit verify`). Runs until SIGTERM or Ctrl-C, then
    drains: the open associations finish, everything received is scored, due results are sent.
    --config node.yaml holds the AE allow-list and TLS, e.g.:
        allow-ae: [MODALITY1, ORTHANC]
        tls-cert: node.pem
        tls-key: node.key
        tls-ca: hospital-ca.pem

    Example: edgessl dicom-node --bundle bundle/ --out node/ --port 11112 --forward PACS@10.0.0.5:104
    """
    from edgessl.edge_runtime.medical.dicom_node import DicomNode

    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # the node says what failed, in one line
    node = DicomNode(config_from_args(NodeConfig, args))
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        s = node.serve(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    text = summary_lines(f"edgessl dicom-node: stopped; {s['received']} instance(s) received, {s['scored']} scored, "
                         f"{s['acknowledged']} result(s) acknowledged",
                         s, ("not_scored", "send_failures", "waiting_in_spool", "worklist", "report", "audit_log"))
    return Outcome(s, text)


DICOM_NODE = Command(
    "dicom-node", _dicom_node, (NodeConfig,), (
        Opt("--out", "the node's folder: spool, worklist, report and audit log", metavar="DIR", required=True),
        Opt("--port", "TCP port to listen on"),
        Opt("--bind", "address to listen on (0.0.0.0: every interface)", metavar="ADDRESS"),
        Opt("--ae-title", "the node's AE title (the called AE title senders use; the calling one when forwarding)",
            metavar="AET"),
        Opt("--forward", "where results go by C-STORE (default: kept in the spool)", metavar="AET@HOST:PORT"),
        Opt("--allow-ae", "calling AE titles accepted (default: any)", metavar="AET"),
        Opt("--tls-cert", "PEM certificate: listen with TLS", metavar="PEM"),
        Opt("--tls-key", "PEM private key of --tls-cert", metavar="PEM"),
        Opt("--tls-ca", "PEM CA certificate(s): accept only clients with a certificate they signed (and check "
                        "the destination's with --forward-tls)", metavar="PEM"),
        Opt("--forward-tls", "send results over TLS (with --tls-cert/--tls-key as the client certificate)"),
        OPERATING_POINT_OPT,
        AUDIT_KEY,
        Opt("--batch-size", "instances scored together at most (each is scored on its own pixels only)"),
        REPORT_IMAGES,
        MAX_PIXELS,
        Opt("--retry-initial", "seconds before the first retry of a failed send (doubling after each failure)",
            metavar="S"),
        Opt("--retry-max", "longest wait between retries of a failed send, in seconds", metavar="S"),
        *BUNDLE),
    help="DICOM Storage SCP next to the scanner: triage what arrives, send SR results back to the PACS")

COMMANDS = (DICOM_NODE,)
