"""A real Orthanc (Debian's ``orthanc``) for the tests: started on loopback ports with a temporary
configuration and storage, driven through its REST API (stdlib ``urllib``: no client library)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

from requires import require_binary
from dicom_net import free_port


class Orthanc:
    """``Orthanc(folder)`` runs until ``close``; ``dicom_port``, ``aet``; REST helpers below."""

    aet = "ORTHANC"

    def __init__(self, folder: Path):
        binary = require_binary("Orthanc", reason="Orthanc is not installed (apt-get install orthanc)")
        folder.mkdir(parents=True, exist_ok=True)
        self.http_port, self.dicom_port = free_port(), free_port()
        config = {"Name": "edgessl-test", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
                  "HttpPort": self.http_port, "DicomPort": self.dicom_port, "DicomAet": self.aet,
                  "RemoteAccessAllowed": False, "AuthenticationEnabled": False, "Plugins": [],
                  "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "StorageCompression": False}
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = folder / "orthanc.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                self.get("/system")
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"Orthanc did not start: {self.log.read_text()[-2000:]}")
                time.sleep(0.2)

    def _call(self, method: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=body, method=method,
                                     headers={"Content-Type": content_type} if body is not None else {})
        with urllib.request.urlopen(req, timeout=120) as rsp:
            data = rsp.read()
        return data

    def get(self, path: str):
        return json.loads(self._call("GET", path))

    def post(self, path: str, payload) -> dict:
        return json.loads(self._call("POST", path, json.dumps(payload).encode()) or b"{}")

    def upload(self, path: Path) -> dict:
        """POST /instances: the instance's Orthanc IDs (``ID``, ``ParentStudy``, ...)."""
        return json.loads(self._call("POST", "/instances", path.read_bytes(), "application/dicom"))

    def add_modality(self, name: str, aet: str, port: int) -> None:
        self._call("PUT", f"/modalities/{name}", json.dumps({"AET": aet, "Host": "127.0.0.1", "Port": port}).encode())

    def study_instances(self, study_id: str) -> list[dict]:
        return self.get(f"/studies/{study_id}/instances")

    def file(self, instance_id: str) -> bytes:
        return self._call("GET", f"/instances/{instance_id}/file")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def wait_until(check, timeout: float = 120.0, every: float = 0.25):
    """``check()``'s first truthy value, polling; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"not done within {timeout:g} s")

