"""DICOM networking for the node's tests, with real pynetdicom associations on loopback: a PACS
stand-in that stores what it receives (or refuses it), a sender, the node as a process, the SR read
back, and TLS certificates."""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

from requires import require

pynetdicom = require("pynetdicom", reason="pynetdicom (optional group 'medical') is not installed")
from pydicom import dcmread  # noqa: E402
from pynetdicom import AE, evt  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SR_CLASS, SC_CLASS = "1.2.840.10008.5.1.4.1.1.88.33", "1.2.840.10008.5.1.4.1.1.7"
SYNTAXES = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """A Storage SCP on loopback standing in for the PACS: keeps every dataset it acknowledges;
    ``status`` is what it answers (set it to a failure to refuse)."""

    def __init__(self, port: int = 0, ae_title: str = "PACS", status: int = 0x0000):
        self.received: list = []
        self.status = status
        self._lock = threading.Lock()
        ae = AE(ae_title)
        for uid in (SR_CLASS, SC_CLASS):
            ae.add_supported_context(uid, SYNTAXES)
        self._server = ae.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.port = self._server.server_address[1]

    def _store(self, event) -> int:
        if self.status == 0x0000:
            ds = event.dataset
            ds.file_meta = event.file_meta
            with self._lock:
                self.received.append(ds)
        return self.status

    def wait_for(self, n: int, timeout: float = 60.0) -> list:
        deadline = time.monotonic() + timeout
        while len(self.received) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return list(self.received)

    def close(self) -> None:
        self._server.shutdown()


def store(files: list[Path], port: int, calling_ae: str = "SCU", called_ae: str = "EDGESSL",
          tls_args=None) -> list[int]:
    """C-STORE ``files`` to the node over one association; each status (an exception when refused)."""
    datasets = [dcmread(f) for f in files]
    ae = AE(calling_ae)
    for cls, ts in sorted({(str(d.SOPClassUID), str(d.file_meta.TransferSyntaxUID)) for d in datasets}):
        ae.add_requested_context(cls, ts)
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae, tls_args=tls_args)
    if not assoc.is_established:
        raise ConnectionError("association not established" + (" (rejected)" if assoc.is_rejected else ""))
    try:
        return [int(assoc.send_c_store(d).Status) for d in datasets]
    finally:
        assoc.release()


def echo(port: int, called_ae: str = "EDGESSL") -> bool:
    ae = AE("SCU")
    ae.add_requested_context("1.2.840.10008.1.1")
    assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
    if not assoc.is_established:
        return False
    ok = int(assoc.send_c_echo().Status) == 0
    assoc.release()
    return ok


@contextlib.contextmanager
def node_process(args: list[str], port: int, log: Path) -> Iterator[subprocess.Popen]:
    """``edgessl dicom-node ARGS --port PORT`` as a process, once it answers C-ECHO; stopped (SIGTERM)
    at the end unless the test ended it."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "edgessl", "dicom-node", *args, "--port", str(port),
                                 "--bind", "127.0.0.1"], stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 90
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dicom-node did not start: {log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(60)


def _answers(port: int) -> bool:
    try:
        return echo(port)
    except (OSError, RuntimeError):
        return False


def sr_content(ds) -> dict:
    """An SR's content tree as {concept meaning: value}; each ``Image result`` container is a dict in
    the list under that name."""
    out: dict = {}
    for item in ds.ContentSequence:
        name = item.ConceptNameCodeSequence[0].CodeMeaning
        kind = item.ValueType
        if kind == "CONTAINER":
            out.setdefault(name, []).append(sr_content(item))
        elif kind == "TEXT":
            out[name] = item.TextValue
        elif kind == "NUM":
            out[name] = float(item.MeasuredValueSequence[0].NumericValue)
        elif kind == "CODE":
            out[name] = item.ConceptCodeSequence[0].CodeMeaning
        elif kind == "IMAGE":
            ref = item.ReferencedSOPSequence[0]
            out[name] = (ref.ReferencedSOPClassUID, ref.ReferencedSOPInstanceUID,
                         ref.get("ReferencedFrameNumber"))
    return out


def tls_files(folder: Path) -> dict[str, Path]:
    """A CA, and a certificate signed by it for 127.0.0.1/localhost (used by both ends), as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    import ipaddress

    def name(cn: str):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test CA")).issuer_name(name("test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"ca": folder / "ca.pem", "cert": folder / "node.pem", "key": folder / "node.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths
