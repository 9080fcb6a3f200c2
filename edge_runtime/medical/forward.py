"""The node's sending side: result objects to the PACS by C-STORE (pynetdicom, imported when sending).

``Destination.parse("PACS@10.0.0.5:104")`` names where results go. ``send`` opens one association
for a batch of files, stores each, and returns each file's DIMSE status; a destination that cannot
be reached (refused, timed out, association rejected or aborted) is one ``EdgesslError`` for the
whole batch. A result counts as acknowledged only on a success (0x0000) or warning (0xB000-0xBFFF)
status. ``backoff`` is the wait before the next try: doubling from ``initial``, at most ``maximum``.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import EdgesslError

ADDRESS = re.compile(r"^(?P<aet>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")
IMPLICIT_LE, EXPLICIT_LE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"


@dataclass(frozen=True)
class Destination:
    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> "Destination":
        m = ADDRESS.match(text.strip())
        if not m or not 0 < int(m["port"]) < 65536:
            raise EdgesslError(f"--forward {text!r}: expected AET@HOST:PORT, e.g. PACS@10.0.0.5:104")
        return cls(m["aet"].strip(), m["host"], int(m["port"]))

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


def acknowledged(status: int) -> bool:
    """Success, or a warning (the object was stored, with a coercion or similar)."""
    return status == 0x0000 or 0xB000 <= status <= 0xBFFF


def backoff(attempts: int, initial: float, maximum: float) -> float:
    """Seconds to wait after the ``attempts``-th failed try."""
    return min(maximum, initial * 2.0 ** max(0, attempts - 1))


def send(files: Sequence[Path], dest: Destination, calling_ae: str, tls: ssl.SSLContext | None = None,
         timeout: float = 30.0) -> list[int]:
    """C-STORE each file to ``dest`` over one association; each file's status (-1: not sent, the
    association failed before it)."""
    from pydicom import dcmread
    from pynetdicom import AE

    datasets = [dcmread(f) for f in files]
    ae = AE(calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in sorted({str(ds.SOPClassUID) for ds in datasets}):
        ae.add_requested_context(sop_class, [EXPLICIT_LE, IMPLICIT_LE])
    tls_args = (tls, dest.host) if tls is not None else None
    try:
        assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, tls_args=tls_args)
    except (OSError, ssl.SSLError) as exc:
        raise EdgesslError(f"cannot reach {dest} ({exc})") from None
    if not assoc.is_established:
        why = "rejected the association" if assoc.is_rejected else "did not answer or aborted the association"
        raise EdgesslError(f"{dest} {why}")
    statuses = []
    try:
        for ds in datasets:
            if not assoc.is_established:
                statuses.append(-1)
                continue
            rsp = assoc.send_c_store(ds)
            statuses.append(int(rsp.Status) if "Status" in rsp else -1)
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses
