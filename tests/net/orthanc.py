"""Orthanc (Debian ``orthanc``) as a real PACS for the tests: its own config, free ports.

Started as a subprocess with a JSON config in a temp folder: its own storage,
DICOM and HTTP on free ports, no plugins, no remote access (REST from
loopback only), the called AE title and the calling host checked, and our
listener the only modality it knows (find, move, get, store allowed).  Its
ports bind every interface whatever the config says: the tests send it
loopback traffic only.  It is stopped with SIGKILL (SIGTERM takes it over
3 s; its SQLite index survives a kill, which the restart test relies on).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.net.conftest import free_port

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"

needs_orthanc = pytest.mark.skipif(
    not Path(ORTHANC).exists(), reason="needs Orthanc (Debian orthanc, installed by make)"
)


class Orthanc:
    """One Orthanc server over a folder; :meth:`start`, :meth:`kill`, REST helpers."""

    def __init__(self, folder: Path, *, ae_title: str, our_ae: str, our_port: int) -> None:
        self.folder = folder
        self.ae_title = ae_title
        self.dicom_port = free_port()
        self.http_port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        config = {
            "Name": "mricurate-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "Plugins": [],
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": ae_title,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomCheckCalledAet": True,
            "DicomCheckModalityHost": True,
            "DicomAlwaysAllowEcho": False,
            "DicomAlwaysAllowStore": False,
            "DicomModalities": {
                "mricurate": {
                    "AET": our_ae, "Host": "127.0.0.1", "Port": our_port,
                    "AllowEcho": True, "AllowFind": True, "AllowMove": True, "AllowGet": True,
                    "AllowStore": True,
                }
            },
            "DicomScuTimeout": 5,
            "DicomAssociationCloseDelay": 0,
            "SaveJobs": False,
            "StorageCompression": False,
        }  # fmt: skip
        self.config = folder / "orthanc.json"
        self.config.write_text(json.dumps(config, indent=1))
        self.log = folder / "orthanc.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([ORTHANC, str(self.config)], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.process.returncode}: {self.log}")
            try:
                self.get("/system")
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("Orthanc did not answer its REST API in 20 s")

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def _url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self._url(path), timeout=10) as answer:
            return json.loads(answer.read())

    def upload(self, data: bytes) -> str:
        """POST one DICOM file to /instances; its Orthanc ID."""
        request = urllib.request.Request(self._url("/instances"), data=data, method="POST",
                                         headers={"Content-Type": "application/dicom"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as answer:
            return str(json.loads(answer.read())["ID"])

    def post(self, path: str, body: object) -> Any:
        request = urllib.request.Request(self._url(path), data=json.dumps(body).encode(),
                                         method="POST")  # fmt: skip
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read())

    def find_study(self, accession_number: str) -> str:
        """The Orthanc ID of the study with this accession number (REST /tools/find)."""
        found = self.post("/tools/find", {"Level": "Study",
                                          "Query": {"AccessionNumber": accession_number}})  # fmt: skip
        assert len(found) == 1
        return str(found[0])

    def files(self) -> list[bytes]:
        """Every instance stored, as the DICOM file Orthanc keeps (REST /instances/{id}/file)."""
        files = []
        for ident in self.get("/instances"):
            with urllib.request.urlopen(
                self._url(f"/instances/{ident}/file"), timeout=10
            ) as answer:
                files.append(answer.read())
        return files

    def sop_instance_uids(self) -> set[str]:
        uids = set()
        for ident in self.get("/instances"):
            uids.add(str(self.get(f"/instances/{ident}/simplified-tags")["SOPInstanceUID"]))
        return uids
