"""A catalog file that cannot be written is our failure (StorageError), never an input's.

SQLite only: a PostgreSQL server's disk is the server's to report.  The
disks are real: small tmpfs mounts, filled or remounted read-only.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.catalog import Catalog, InputKind, ItemState, sqlite_url
from pipeline.errors import StorageError
from tests.catalog.conftest import sha


class Disk:
    """A 2 MiB tmpfs mounted for one test.

    (tests/batch/conftest.py has the same helper; importing it costs 4 s of
    twixtools imports, most of this folder's budget.)
    """

    def __init__(self, point: Path) -> None:
        self.point = point

    def mount(self, options: str) -> None:
        done = subprocess.run(
            ["mount", *options.split(), str(self.point)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            if "remount" in options:
                raise AssertionError(f"mount {options}: {done.stderr}")
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def remount(self, options: str) -> None:
        self.mount(f"-o remount,{options}")

    def fill(self) -> Path:
        """Take every free block with one file; return it."""
        filler = self.point / "filler"
        block = b"\0" * (64 << 10)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while len(block) >= 512:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    block = block[: len(block) // 2]
        finally:
            os.close(fd)
        return filler


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root and mount(8)")
    point = tmp_path / "disk"
    point.mkdir()
    mounted = Disk(point)
    mounted.mount("-t tmpfs -o size=2m,mode=0700 tmpfs")
    try:
        yield mounted
    finally:
        if subprocess.run(["umount", str(point)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


def test_a_full_disk_under_the_catalog(disk: Disk) -> None:
    url = sqlite_url(disk.point / "catalog.sqlite")
    with Catalog.open(url) as catalog:
        run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
        filler = disk.fill()
        with pytest.raises(StorageError, match="cannot write to the catalog") as failed:
            catalog.register([(sha(n), InputKind.DICOM, n) for n in range(500)], run)
        assert "ENOSPC" in str(failed.value) and "free space there" in str(failed.value)
        assert failed.value.location == disk.point
        filler.unlink()
        assert catalog.items() == []  # nothing of the batch was kept
        assert len(catalog.register([(sha(n), InputKind.DICOM, n) for n in range(500)], run)) == 500


def test_a_read_only_catalog(disk: Disk) -> None:
    url = sqlite_url(disk.point / "catalog.sqlite")
    with Catalog.open(url) as catalog:
        run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
    disk.remount("ro")
    # SQLite cannot make its write-ahead log index there: refused at the start.
    with pytest.raises(StorageError, match="read-only") as failed:
        Catalog.open(url)
    assert "EROFS" in str(failed.value) and "remount it read-write" in str(failed.value)
    disk.remount("rw")
    with Catalog.open(url) as catalog:
        catalog.register([(sha(1), InputKind.DICOM, 1)], run)
        assert catalog.state_of(sha(1)) is ItemState.NEW
