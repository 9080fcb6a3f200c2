"""The node's receiving side: a DICOM Storage SCP (pynetdicom, imported when started).

It answers C-ECHO, and C-STORE of the image storage SOP classes in every transfer syntax this
install decodes (native ones always; a compressed one when pydicom has a decoder for it, so a sender
whose syntax we cannot read falls back to another at association time). For each C-STORE:

1. the dataset is checked (a UID that names a file, pixel data that agrees with its header:
   ``dicom.check_pixel_data``); a malformed one gets status 0xC000 (cannot understand);
2. a SOP Instance UID the spool already has is a duplicate: success, not stored again;
3. otherwise the instance (file meta + the dataset bytes as received) is written to the spool and
   fsynced (``spool.Spool.store``) and only then is the success status returned; a spool that
   cannot be written gives 0xA700 (out of resources);
4. each outcome is one ``instance_received`` audit line (with the sha256 of the bytes as received).

Associations are audited when accepted, rejected (a calling AE title not in ``allow_ae``; the
standard's "calling AE title not recognised"), released or aborted. TLS: ``tls_context`` builds the
server's ``ssl.SSLContext`` (with a CA, peers must present a certificate it signed).
"""

from __future__ import annotations

import hashlib
import ssl
import threading
import time
import uuid
import weakref
from typing import Any, Callable, Sequence

from ..errors import EdgesslError
from ..timestamps import utc_now
from .dicom import check_pixel_data
from .node_audit import NodeAudit
from .spool import Spool, check_uid

SUCCESS, OUT_OF_RESOURCES, CANNOT_UNDERSTAND = 0x0000, 0xA700, 0xC000
NATIVE = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2")


def image_storage_classes() -> list[str]:
    """The UIDs of the storage SOP classes that hold images (their names say "Image")."""
    from pynetdicom.sop_class import _STORAGE_CLASSES

    return sorted(uid for name, uid in _STORAGE_CLASSES.items() if "Image" in name)


def decodable_syntaxes() -> list[str]:
    """The native transfer syntaxes, then each compressed one pydicom has a decoder for here."""
    from pydicom.pixels import get_decoder
    from pynetdicom import ALL_TRANSFER_SYNTAXES

    out = list(NATIVE)
    for uid in ALL_TRANSFER_SYNTAXES:
        if uid in out:
            continue
        try:
            if get_decoder(uid).is_available:
                out.append(uid)
        except NotImplementedError:
            continue
    return out


def tls_context(cert: str | None, key: str | None, ca: str | None, server: bool) -> ssl.SSLContext | None:
    """The SSL context of the listening side (``server``) or of the forwarding side; None without a
    certificate. With ``ca``, the peer must present a certificate ``ca`` signed."""
    if not cert:
        if key or ca:
            raise EdgesslError("TLS needs tls-cert (and tls-key); tls-key and tls-ca alone do nothing")
        return None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH if server else ssl.Purpose.SERVER_AUTH,
                                         cafile=ca)
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise EdgesslError(f"TLS: cannot load tls-cert {cert} / tls-key {key} / tls-ca {ca} ({exc})") from None
    if server and ca:
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


class StorageSCP:
    """Receives instances into ``spool``; ``on_stored(uid)`` is called for each one newly stored."""

    def __init__(self, ae_title: str, spool: Spool, audit: NodeAudit, on_stored: Callable[[str], None],
                 allow_ae: Sequence[str] = (), ssl_context: ssl.SSLContext | None = None):
        self.ae_title, self.spool, self.audit, self.on_stored = ae_title, spool, audit, on_stored
        self.allow_ae, self.ssl_context = list(allow_ae), ssl_context
        self._ids: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # association -> (id, instances)
        self._lock = threading.Lock()
        self._ae = self._server = None

    # -- the server

    def start(self, bind: str, port: int) -> None:
        from pynetdicom import AE, evt

        ae = AE(self.ae_title)
        syntaxes = decodable_syntaxes()
        for uid in image_storage_classes():
            ae.add_supported_context(uid, syntaxes)
        ae.add_supported_context("1.2.840.10008.1.1")  # Verification (C-ECHO)
        ae.require_calling_aet = self.allow_ae
        ae.maximum_associations = 16
        handlers = [(evt.EVT_C_STORE, self._store), (evt.EVT_C_ECHO, lambda event: SUCCESS),
                    (evt.EVT_ACCEPTED, self._accepted), (evt.EVT_REJECTED, self._rejected),
                    (evt.EVT_RELEASED, self._closed), (evt.EVT_ABORTED, self._closed)]
        try:
            self._server = ae.start_server((bind, port), block=False, evt_handlers=handlers,
                                           ssl_context=self.ssl_context)
        except OSError as exc:
            raise EdgesslError(f"cannot listen on {bind}:{port} ({exc.strerror or exc})") from None
        self._ae = ae

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def stop(self, wait_s: float = 30.0) -> None:
        """Stop accepting associations; let the open ones finish (at most ``wait_s``), then abort them."""
        if self._server is None:
            return
        self._server.shutdown()
        deadline = time.monotonic() + wait_s
        while self._ae.active_associations and time.monotonic() < deadline:
            time.sleep(0.05)
        for assoc in self._ae.active_associations:
            assoc.abort()
        self._server = None

    # -- associations

    @staticmethod
    def _peer(event) -> dict:
        r = event.assoc.requestor
        return {"calling_ae": str(r.ae_title).strip(), "called_ae": str(event.assoc.acceptor.ae_title).strip(),
                "address": r.address, "port": r.port}

    def _accepted(self, event) -> None:
        aid = uuid.uuid4().hex
        with self._lock:
            self._ids[event.assoc] = [aid, 0]
        self.audit.event("association_accepted", association=aid, tls=self.ssl_context is not None,
                         **self._peer(event))

    def _rejected(self, event) -> None:
        peer = self._peer(event)
        allowed = not self.allow_ae or peer["calling_ae"] in self.allow_ae
        reason = "too many associations" if allowed else "calling AE title not in the allow-list"
        self.audit.event("association_rejected", reason=reason, **peer)

    def _closed(self, event) -> None:
        with self._lock:
            aid, n = self._ids.pop(event.assoc, [None, 0])
        if aid is not None:
            kind = "association_aborted" if event.event.name == "EVT_ABORTED" else "association_released"
            self.audit.event(kind, association=aid, instances=n, **self._peer(event))

    # -- C-STORE

    def _store(self, event) -> int:
        data = event.encoded_dataset(include_meta=False)
        with self._lock:
            entry = self._ids.get(event.assoc)
            if entry is not None:
                entry[1] += 1
        line: dict[str, Any] = {"association": entry[0] if entry else None, "dataset_bytes": len(data),
                                "dataset_sha256": hashlib.sha256(data).hexdigest(), **self._peer(event)}
        line.pop("port")
        status, outcome, reason, uid = SUCCESS, "stored", "", ""
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            uid = str(ds.get("SOPInstanceUID", ""))
            line.update(sop_class_uid=str(ds.get("SOPClassUID", "")), instance_uid=uid,
                        study_uid=str(ds.get("StudyInstanceUID", "")), series_uid=str(ds.get("SeriesInstanceUID", "")),
                        transfer_syntax=str(event.file_meta.TransferSyntaxUID))
            check_uid(uid)
            check_pixel_data(ds, f"instance {uid}")
        except EdgesslError as exc:
            status, outcome, reason = CANNOT_UNDERSTAND, "refused", str(exc)
        except Exception as exc:  # a dataset pydicom cannot decode
            status, outcome, reason = CANNOT_UNDERSTAND, "refused", f"cannot decode the dataset ({exc})"
        if status == SUCCESS:
            receipt = {**line, "received": utc_now()}
            try:
                stored = self.spool.store(uid, event.encoded_dataset(include_meta=True), receipt)
                outcome = "stored" if stored else "duplicate"
            except OSError as exc:
                status, outcome, reason = OUT_OF_RESOURCES, "refused", f"cannot write the spool ({exc.strerror})"
        self.audit.event("instance_received", status=outcome, dimse_status=status, reason=reason, **line)
        if outcome == "stored":
            self.on_stored(uid)
        return status
