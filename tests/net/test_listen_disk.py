"""`mricurate listen` when its disk fills during a receive: a real full file system, not a mock.

The workspace sits on a tmpfs of its own (``mount -t tmpfs -o size=…``, as
root: the tests and CI run as root; elsewhere the test is skipped and says
why).  Once the listener runs, a filler file leaves room for two and a half
instances of a five-instance study (a real MR file of pydicom-data, planted
identifiers); dcmtk's storescu sends the study and goes on past a failure
(``-nh``).  The third instance's temp file hits ENOSPC part way: it and the
two after it are answered "out of resources", nothing of them is left, the
first two are whole and recorded, the listener logs its own failure (no
identifier of the data) and still stores what fits; with the filler gone
the three are sent again and stored.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from pipeline.catalog import Catalog
from pipeline.workspace import Workspace, init_workspace
from tests.net.conftest import SCANNER, free_port, needs_dcmtk, stop, wait_for_port, write_config
from tests.net.test_listen import same_content

pytestmark = needs_dcmtk

SOURCE = "MR-SIEMENS-DICOM-WithOverlays.dcm"  # pydicom-data: a real MR slice, 0.5 MB
INSTANCES = 5
FITS = 2  # room is left for 2.5 instances
# Planted identifiers, each also a value nobody else writes: none may reach the log.
PLANTED = {
    "PatientName": "Plantedsurname^Janeplanted",
    "PatientID": "PLANTPID4711",
    "AccessionNumber": "PLANTACC4711",
    "InstitutionName": "Planted Memorial Hospital",
    "ImageComments": "planted free text: patient PLANTFREE4711 seen on ward 9",
}


def can_mount_tmpfs(where: Path) -> str:
    """Why a tmpfs cannot be mounted here ("" if it can): the probe mounts and unmounts one."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return "mounting a small tmpfs needs root and mount(8)"
    where.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                          capture_output=True, text=True)  # fmt: skip
    if done.returncode != 0:
        return f"mount -t tmpfs is not permitted here: {done.stderr.strip()}"
    subprocess.run(["umount", str(where)], check=True)
    return ""


@dataclass(frozen=True)
class Disk:
    """A workspace on a small tmpfs, `mricurate listen` over it, the study to send."""

    workspace: Workspace
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    mount: Path
    study: list[Path]  # in the order sent
    uids: list[str]  # their SOP Instance UIDs
    study_uid: str


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    why = can_mount_tmpfs(tmp_path / "probe")
    if why:
        pytest.skip(why)
    source = get_testdata_file(SOURCE)
    if source is None:
        pytest.skip(f"needs pydicom-data's {SOURCE}")
    folder, study, uids = tmp_path / "study", [], []
    folder.mkdir()
    study_uid, series_uid = generate_uid(), generate_uid()
    for number in range(INSTANCES):
        ds = dcmread(source)
        for keyword, value in PLANTED.items():
            setattr(ds, keyword, value)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
        ds.InstanceNumber = number + 1
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        study.append(folder / f"{number}.dcm")
        ds.save_as(study[-1], enforce_file_format=True)
        uids.append(str(ds.SOPInstanceUID))

    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)],
                   check=True)  # fmt: skip
    process: subprocess.Popen[bytes] | None = None
    log = tmp_path / "listen.log"  # not on the full disk
    try:
        port = free_port()
        workspace = write_config(
            init_workspace(mount / "w"),
            f"[listen]\nport = {port}\naddress = '127.0.0.1'\nallowed_ae_titles = ['{SCANNER}']\n",
        )
        with log.open("wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-m", "mricurate", "listen", "--workspace", str(workspace.root)],
                stdout=subprocess.DEVNULL, stderr=handle,
            )  # fmt: skip
        wait_for_port(port, process)
        yield Disk(workspace, port, process, log, mount, study, uids, study_uid)
    finally:
        if process is not None:
            stop(process)
        if subprocess.run(["umount", str(mount)]).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(mount: Path, leave: int) -> Path:
    """A filler file that leaves ``leave`` bytes free on the tmpfs."""
    stats = os.statvfs(mount)
    free = stats.f_bavail * stats.f_frsize
    filler = mount / "filler"
    with filler.open("wb") as handle:
        handle.truncate(0)
        remaining = free - leave
        block = b"\0" * (1 << 20)
        while remaining > 0:
            remaining -= handle.write(block[: min(remaining, len(block))])
    return filler


def storescu(port: int, files: list[Path]) -> tuple[int, list[str]]:
    """Send ``files`` in one association, going on past a failure; each one's response."""
    done = subprocess.run(
        ["storescu", "-v", "-nh", "-aet", SCANNER, "-aec", "MRICURATE", "127.0.0.1", str(port),
         *map(str, files)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    responses = re.findall(r"Received Store Response \(([^)]*)\)", done.stdout + done.stderr)
    return done.returncode, responses


def check_incoming(disk: Disk, stored: list[int], others: dict[str, Path] | None = None) -> None:
    """The study's instances ``stored`` (by number) and ``others`` (UID: file sent) are whole
    and recorded, the rest of the study is not recorded, and nothing else is there."""
    workspace = disk.workspace
    expected = {disk.uids[n]: disk.study[n] for n in stored} | (others or {})
    assert list(workspace.receiving.iterdir()) == []  # no temp file, no half dataset
    with Catalog.open(workspace.catalog_url) as catalog:
        receipts = {uid: catalog.received(uid) for uid in [*disk.uids, *expected]}
    assert [n for n, uid in enumerate(disk.uids) if receipts[uid] is not None] == stored
    files = {p.name: p for p in workspace.incoming.iterdir()}
    assert sorted(files) == sorted(f"{receipts[uid].sha256}.dcm" for uid in expected)  # type: ignore[union-attr]
    for uid, sent in expected.items():
        landed = files[f"{receipts[uid].sha256}.dcm"]  # type: ignore[union-attr]
        assert hashlib.sha256(landed.read_bytes()).hexdigest() == landed.stem
        assert str(dcmread(landed, stop_before_pixels=True).SOPInstanceUID) == uid
        assert same_content(landed, sent)


def test_a_full_disk_answers_failure_leaves_nothing_and_a_resend_stores_them(
    disk: Disk, tmp_path: Path
) -> None:
    size = disk.study[0].stat().st_size
    filler = fill(disk.mount, leave=int((FITS + 0.5) * size))

    code, responses = storescu(disk.port, disk.study)
    assert code == 0  # with -nh storescu reports each failure (below) and exits 0
    assert responses == ["Success"] * FITS + ["Refused: OutOfResources"] * (INSTANCES - FITS)
    check_incoming(disk, stored=list(range(FITS)))

    log = disk.log.read_text()
    failures = re.findall(r"could not write an instance from SCANNER into (\S+): "
                          r"the disk is full \(No space left on device\); answered 'out of "
                          r"resources', the sender will retry", log)  # fmt: skip
    assert failures == [str(disk.workspace.receiving)] * (INSTANCES - FITS)
    assert "Traceback" not in log and "refused an instance" not in log  # ours, not the input's
    for value in [*PLANTED.values(), *disk.uids, disk.study_uid]:
        for part in re.split(r"[\^ :]", value):
            assert len(part) < 6 or part not in log, part

    # Still running, and the room the failed instances took part way was given back.
    assert disk.process.poll() is None
    echo = subprocess.run(["echoscu", "-aet", SCANNER, "-aec", "MRICURATE", "127.0.0.1",
                           str(disk.port)], capture_output=True, text=True, timeout=30)  # fmt: skip
    assert echo.returncode == 0, echo.stderr
    small = tmp_path / "small.dcm"
    ds = dcmread(get_testdata_file("MR_small.dcm"))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(small, enforce_file_format=True)
    assert storescu(disk.port, [small]) == (0, ["Success"])

    # Room again: the failed instances, sent again, are stored.
    filler.unlink()
    code, responses = storescu(disk.port, disk.study[FITS:])
    assert (code, responses) == (0, ["Success"] * (INSTANCES - FITS))
    check_incoming(disk, list(range(INSTANCES)), {str(ds.SOPInstanceUID): small})
    assert disk.process.poll() is None


def test_a_temp_file_that_cannot_be_made_is_a_failure_not_an_exception(tmp_path: Path) -> None:
    """The spool's other path: no file at all (here the folder is gone: a real ENOENT)."""
    import tempfile

    from pipeline.net import spool

    saved = tempfile.tempdir
    tempfile.tempdir = str(tmp_path / "gone")
    try:
        file = spool.SpoolFile(delete=False, mode="wb", suffix=".dcm")
    finally:
        tempfile.tempdir = saved
    assert file.write(b"part of a dataset") == 17  # dropped, the association reads on
    file.file.flush()
    error = spool.failure(file.name)
    assert error is not None and not Path(file.name).exists()
    assert spool.describe(error) == "a write failed (No such file or directory)"
    file.close()
    assert spool.failure(file.name) is None
