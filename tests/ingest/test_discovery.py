"""Discovery by content: a file still being written waits, a copy or a rename is not new."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom.data import get_testdata_file

from pipeline.catalog.catalog import Catalog
from pipeline.catalog.states import InputKind, ItemState
from pipeline.ingest.discovery import discover_incoming

QUIET = 60.0


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    opened = Catalog.open(f"sqlite:///{tmp_path / 'catalog.sqlite'}")
    yield opened  # type: ignore[misc]
    opened.close()


def _dicom() -> bytes:
    path = get_testdata_file("MR_small.dcm")
    assert path is not None
    return Path(path).read_bytes()


def test_a_file_dropped_in_pieces_is_taken_once_complete(tmp_path: Path, catalog: Catalog) -> None:
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    data = _dicom()
    path = incoming / "IM0001"
    path.write_bytes(data[: len(data) // 2])
    run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
    now = time.time()
    first = discover_incoming(incoming, catalog, run, quiet_seconds=QUIET, now=now)
    assert (first.waiting, len(first.new)) == (1, 0), "half a file is not taken"
    with path.open("ab") as f:
        f.write(data[len(data) // 2 :])
    second = discover_incoming(incoming, catalog, run, quiet_seconds=QUIET, now=now + 1)
    assert (second.waiting, len(second.new)) == (1, 0), "changed within the quiet time: waits"
    later = time.time() + QUIET + 1
    third = discover_incoming(incoming, catalog, run, quiet_seconds=QUIET, now=later)
    assert third.waiting == 0 and len(third.new) == 1
    (sha,) = third.new
    assert third.files[sha].kind is InputKind.DICOM
    assert [i.sha256 for i in catalog.items()] == [sha], "only the complete content is an item"
    assert catalog.state_of(sha) is ItemState.NEW


def test_a_copy_or_a_rename_is_not_new(tmp_path: Path, catalog: Catalog) -> None:
    incoming = tmp_path / "incoming"
    (incoming / "a").mkdir(parents=True)
    (incoming / "a" / "IM1").write_bytes(_dicom())
    run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
    later = time.time() + QUIET + 1
    first = discover_incoming(incoming, catalog, run, quiet_seconds=QUIET, now=later)
    assert len(first.new) == 1
    (incoming / "a" / "IM1").rename(incoming / "renamed")
    (incoming / "b").mkdir()
    (incoming / "b" / "copy").write_bytes(_dicom())
    second = discover_incoming(incoming, catalog, run, quiet_seconds=QUIET, now=later)
    assert len(second.new) == 0
    assert second.known == 1 and second.copies == 1
    assert len(catalog.items()) == 1


def test_what_is_not_a_regular_file_is_counted_not_hashed(tmp_path: Path, catalog: Catalog) -> None:
    import os

    incoming = tmp_path / "incoming"
    incoming.mkdir()
    os.mkfifo(incoming / "fifo")  # reading it would block the run forever
    (incoming / "loop").symlink_to(incoming, target_is_directory=True)
    run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
    found = discover_incoming(incoming, catalog, run, quiet_seconds=0)
    assert found.not_files == 2 and not found.files
