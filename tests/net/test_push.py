"""`mricurate push` and `echo` against dcmtk's storescp; the host allowlist of the listener."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from mricurate.cli import main
from pipeline.catalog import Catalog, PushOutcome
from pipeline.net.errors import NetworkError
from pipeline.net.listener import Listener, ListenOptions
from pipeline.workspace import Workspace, init_workspace
from tests.net.conftest import free_port, needs_dcmtk, stop, wait_for_port, write_config

pytestmark = needs_dcmtk

UNCOMPRESSED = ["CT_small.dcm", "MR_small.dcm", "emri_small.dcm"]
COMPRESSED = ["JPEG2000.dcm", "SC_rgb_rle.dcm"]


def release(workspace: Workspace, version: str = "v0001") -> list[str]:
    """A published release's layout: dicom/ files and the SHA256SUMS that lists them."""
    root = workspace.release / version
    lines = []
    for number, name in enumerate(UNCOMPRESSED + COMPRESSED):
        relpath = f"dicom/sub-{number:02d}/{name}"
        (root / relpath).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(get_testdata_file(name), root / relpath)
        lines.append(f"{hashlib.sha256((root / relpath).read_bytes()).hexdigest()}  {relpath}\n")
    (root / "SHA256SUMS").write_text("".join(sorted(lines, key=lambda x: x.split()[1])))
    return [line.split()[1] for line in lines]


@pytest.fixture
def storescp(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """dcmtk's storescp as a research PACS that takes uncompressed syntaxes only (its default)."""
    port, folder = free_port(), tmp_path / "pacs"
    folder.mkdir()
    process = subprocess.Popen(["storescp", "-aet", "RESEARCH", "-od", str(folder), str(port)],
                               env={**os.environ, "TCP_NODELAY": "1"})  # fmt: skip
    wait_for_port(port, process)
    yield port, folder
    stop(process)


def node_config(port: int) -> str:
    return f"[pacs.research]\nae_title = 'RESEARCH'\nhost = '127.0.0.1'\nport = {port}\n"


def test_push_sends_the_release_and_a_rerun_only_what_failed(
    tmp_path: Path, storescp: tuple[int, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    port, received = storescp
    workspace = write_config(init_workspace(tmp_path / "w"), node_config(port))
    files = release(workspace)
    (workspace.incoming / "not-released.dcm").write_bytes(b"x")
    args = ["push", "--workspace", str(workspace.root), "--to", "research"]
    assert main(["echo", "--workspace", str(workspace.root), "research"]) == 0
    # The compressed files' exact syntaxes are refused by this storescp: they fail.
    assert main(args) == 1
    assert "3 sent, 0 sent before, 2 failed (of 5 DICOM files)" in capsys.readouterr().out
    assert len(list(received.iterdir())) == 3
    with Catalog.open(workspace.catalog_url) as catalog:
        attempts = catalog.push_attempts("research", "v0001")
    assert {a.relpath for a in attempts} == set(files)
    failed = {a.relpath for a in attempts if a.outcome is PushOutcome.FAILED}
    assert failed == {f for f in files if f.rsplit("/", 1)[1] in COMPRESSED}
    assert all(a.status == 0 for a in attempts if a.outcome is PushOutcome.SENT)

    # A node that takes everything, on another port: only the two failed files go.
    wide, folder = free_port(), tmp_path / "pacs2"
    folder.mkdir()
    process = subprocess.Popen(["storescp", "+xa", "-aet", "RESEARCH", "-od", str(folder),
                                str(wide)], env={**os.environ, "TCP_NODELAY": "1"})  # fmt: skip
    try:
        wait_for_port(wide, process)
        write_config(workspace, node_config(wide))
        assert main(args) == 0
        assert "2 sent, 3 sent before, 0 failed" in capsys.readouterr().out
        assert len(list(folder.iterdir())) == 2
        assert main(args) == 0  # and a third run sends nothing
        assert "0 sent, 5 sent before, 0 failed" in capsys.readouterr().out
        assert len(list(folder.iterdir())) == 2
    finally:
        stop(process)
    # A node that is down: a clear error, nothing recorded as sent.
    assert main(["echo", "--workspace", str(workspace.root), "research"]) == 2
    assert "cannot reach research" in capsys.readouterr().err


def test_push_refuses_a_file_outside_the_release(tmp_path: Path) -> None:
    from pipeline.net.push import release_dicom_files

    workspace = init_workspace(tmp_path / "w")
    release(workspace)
    secret = workspace.private / "staged.dcm"
    secret.write_bytes(b"phi")
    sums = workspace.release / "v0001" / "SHA256SUMS"
    digest = hashlib.sha256(b"phi").hexdigest()
    sums.write_text(sums.read_text() + f"{digest}  dicom/../../../private/staged.dcm\n")
    with pytest.raises(NetworkError, match="is not a file of the release"):
        release_dicom_files(workspace, "v0001")
    sums.write_text(sums.read_text().replace("dicom/../../../private/staged.dcm", "dicom/link.dcm"))
    (workspace.release / "v0001" / "dicom" / "link.dcm").symlink_to(secret)
    with pytest.raises(NetworkError, match="is not a file of the release"):
        release_dicom_files(workspace, "v0001")


def test_a_host_not_listed_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    workspace = write_config(
        init_workspace(tmp_path / "w"),
        "[listen]\naddress = '127.0.0.1'\nallowed_ae_titles = ['SCANNER']\n"
        "allowed_hosts = ['10.9.9.9']\n",
    )
    saved = tempfile.tempdir  # the listener sets it for its process: give it back
    with Catalog.open(workspace.catalog_url) as catalog:
        listener = Listener(workspace, catalog, ListenOptions.of(workspace, port=0))
        try:
            port = listener.start()
            refused = subprocess.run(
                ["storescu", "-aet", "SCANNER", "127.0.0.1", str(port),
                 get_testdata_file("CT_small.dcm")],
                capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        finally:
            listener.stop()
            tempfile.tempdir = saved
    # The A-ASSOCIATE-RJ sent from EVT_REQUESTED reaches dcmtk as an abort.
    assert refused.returncode != 0
    assert "Association Request Failed" in refused.stderr
    assert list(workspace.incoming.iterdir()) == []
    assert "the host is not in listen.allowed_hosts" in caplog.text


def test_the_listener_needs_an_allowed_ae_title(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "w")
    with (
        Catalog.open(workspace.catalog_url) as catalog,
        pytest.raises(NetworkError, match="--allow-ae"),
    ):
        Listener(workspace, catalog, ListenOptions.of(workspace))
