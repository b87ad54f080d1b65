"""Real peers for the network tests: our listener as `mricurate listen`, dcmtk's tools."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset
from pydicom.uid import generate_uid

from pipeline.workspace import Workspace, init_workspace, open_workspace

SCANNER = "SCANNER"

needs_dcmtk = pytest.mark.skipif(
    shutil.which("storescu") is None, reason="needs dcmtk (Debian dcmtk, installed by make)"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float = 60.0) -> None:
    """Wait for a started peer to listen (generous: a loaded 2-core machine starts slowly)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the peer exited with {process.returncode} before listening")
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port} after {seconds} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def write_config(workspace: Workspace, text: str) -> Workspace:
    (workspace.root / "mricurate.toml").write_text(text)
    return open_workspace(workspace.root)


@pytest.fixture(scope="module")
def listening(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Workspace, int]]:
    """A workspace and `mricurate listen` on a free port, allowing SCANNER from loopback."""
    workspace = init_workspace(tmp_path_factory.mktemp("net") / "w")
    port = free_port()
    workspace = write_config(
        workspace,
        f"[listen]\nport = {port}\naddress = '127.0.0.1'\nallowed_ae_titles = ['{SCANNER}']\n"
        "allowed_hosts = ['127.0.0.1']\n",
    )
    log = (workspace.root.parent / "listen.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mricurate", "listen", "--workspace", str(workspace.root)],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
        yield workspace, port
    finally:
        stop(process)
        log.close()


def listen_log(workspace: Workspace) -> str:
    return (workspace.root.parent / "listen.log").read_text()


def dataset_bytes(path: Path) -> bytes:
    """A DICOM file's bytes after its File Meta Information: the dataset as it was sent."""
    from pydicom.filereader import read_file_meta_info

    data = path.read_bytes()
    meta = read_file_meta_info(path)
    end = 132 + 12 + int(meta.FileMetaInformationGroupLength)
    return data[end:]


def saved_in_study(ds: Dataset, study_uid: str, number: int, path: Path) -> Path:
    """``ds`` as the ``number``-th series of the study (new series and instance UIDs), saved."""
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, generate_uid()
    ds.SeriesNumber = number + 1
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)
    return path
