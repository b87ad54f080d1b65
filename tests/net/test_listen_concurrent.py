"""Several senders at once: the listener's group commit (:class:`pipeline.net.receive.Receiver`).

C-STOREs that arrive while a commit runs are committed together (one
folder fsync, one catalog transaction); what must hold whatever the
interleaving: every instance stored once (the same SOP Instance UID sent
by two senders at once too), every file in ``incoming/`` recorded, every
record's file there, nothing left in ``private/receiving``.  In process
with threads over SQLite and PostgreSQL, and end to end with four dcmtk
``storescu`` associations at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from subprocess import PIPE

import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from sqlalchemy import create_engine, make_url, text

from pipeline.catalog import Catalog, sqlite_url
from pipeline.net.receive import Peer, ReceiveOutcome, Receiver
from pipeline.net.status import StoreStatus
from pipeline.workspace import Workspace, init_workspace
from tests.net.conftest import SCANNER, needs_dcmtk
from tests.postgres import pg_cluster, pg_database, pg_server, pg_url  # noqa: F401

SENDERS = 4
PER_SENDER = 6
SHARED = 3  # instances every sender sends (the same SOP Instance UID, at once)


def instances(folder: Path, count: int) -> list[Path]:
    """``count`` small real-looking instances (pydicom's CT_small with new UIDs)."""
    folder.mkdir(parents=True, exist_ok=True)
    template = dcmread(Path(str(get_testdata_file("CT_small.dcm"))))
    paths = []
    for number in range(count):
        template.SOPInstanceUID = template.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        path = folder / f"{number:03d}.dcm"
        template.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def sender_files(tmp_path: Path) -> list[list[Path]]:
    """What each sender sends: its own instances and the shared ones (each a copy)."""
    shared = instances(tmp_path / "shared", SHARED)
    plans = []
    for sender in range(SENDERS):
        own = instances(tmp_path / f"sender{sender}", PER_SENDER)
        for path in shared:
            copy = tmp_path / f"sender{sender}" / f"shared-{path.name}"
            shutil.copyfile(path, copy)
            own.append(copy)
        plans.append(own)
    return plans


def uid_of(path: Path) -> str:
    return str(dcmread(path, stop_before_pixels=True).SOPInstanceUID)


def assert_each_once_and_recorded(workspace: Workspace, sent: list[Path], url: str) -> None:
    uids = {uid_of(path) for path in sent}
    stored = sorted(workspace.incoming.iterdir())
    assert len(stored) == len(uids) == SENDERS * PER_SENDER + SHARED
    assert {uid_of(path) for path in stored} == uids  # each once
    with Catalog.open(url) as catalog:
        assert catalog.received_among(uids) == uids  # every record there
        for path in stored:
            receipt = catalog.received(uid_of(path))
            assert receipt is not None
            assert path.name == f"{receipt.sha256}.dcm"  # the record's file is this one
            assert hashlib.sha256(path.read_bytes()).hexdigest() == receipt.sha256  # whole
    assert list(workspace.receiving.iterdir()) == []


@pytest.fixture(params=["sqlite", "postgresql"])
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        url: str = request.getfixturevalue("pg_url")
        return url
    return sqlite_url(tmp_path / "catalog.sqlite")


@contextlib.contextmanager
def catalog_locked(url: str) -> Iterator[None]:
    """Another client holds the received table's write lock (the commit under way waits)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        other = sqlite3.connect(str(parsed.database), isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            other.execute("ROLLBACK")
            other.close()
        return
    engine = create_engine(parsed)
    try:
        with engine.connect() as connection, connection.begin():
            connection.execute(text("LOCK TABLE received IN EXCLUSIVE MODE"))
            yield
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_threads_at_once_share_commits_and_store_each_instance_once(
    tmp_path: Path, catalog_url: str
) -> None:
    workspace = init_workspace(tmp_path / "w")
    workspace.receiving.mkdir(mode=0o700, exist_ok=True)
    plans = sender_files(tmp_path / "sent")
    results: list[tuple[str, ReceiveOutcome]] = []
    with Catalog.open(catalog_url) as catalog:
        receiver = Receiver(workspace.incoming, catalog)

        def send(sender: int, paths: list[Path]) -> None:
            for n, path in enumerate(paths):
                temp = workspace.receiving / f"{sender}-{n}.dcm"  # as pynetdicom leaves it
                shutil.copyfile(path, temp)
                got = receiver.store(temp, uid_of(path), Peer(f"S{sender}", "127.0.0.1"))
                temp.unlink(missing_ok=True)  # pynetdicom removes its temp file
                assert got.status is StoreStatus.SUCCESS
                results.append((uid_of(path), got.outcome))

        def run(chunks: list[list[Path]]) -> list[threading.Thread]:
            threads = [threading.Thread(target=send, args=(s, c)) for s, c in enumerate(chunks)]
            for thread in threads:
                thread.start()
            return threads

        # The first instance's commit waits for the lock; the other senders' queue up
        # meanwhile and are committed together, in one transaction, when it is free.
        with catalog_locked(catalog_url):
            first = run([plan[:1] for plan in plans])
            wait_until(lambda: receiver.waiting == SENDERS - 1)
        for thread in first:
            thread.join()
        assert receiver.commits == 2
        # The rest at once (the shared instances too, from every sender): however interleaved.
        for thread in run([plan[1:] for plan in plans]):
            thread.join()
    sent = [path for plan in plans for path in plan]
    assert len(results) == len(sent)
    stored = [uid for uid, outcome in results if outcome is ReceiveOutcome.STORED]
    assert len(stored) == len(set(stored)) == SENDERS * PER_SENDER + SHARED
    assert_each_once_and_recorded(workspace, sent, catalog_url)


@needs_dcmtk
def test_four_storescu_associations_at_once(
    listening: tuple[Workspace, int], tmp_path: Path
) -> None:
    workspace, port = listening
    plans = sender_files(tmp_path)
    command = ["storescu", "-aet", SCANNER, "-aec", "MRICURATE", "-xe", "127.0.0.1", str(port)]
    senders = [
        subprocess.Popen([*command, *map(str, plan)], stdout=subprocess.DEVNULL, stderr=PIPE)
        for plan in plans
    ]
    for sender in senders:
        _, err = sender.communicate(timeout=60)
        assert sender.returncode == 0, err.decode()[-500:]
    assert_each_once_and_recorded(
        workspace, [p for plan in plans for p in plan], workspace.catalog_url
    )


def test_a_failed_rename_records_nothing_and_a_resend_is_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    workspace = init_workspace(tmp_path / "w")
    workspace.receiving.mkdir(mode=0o700, exist_ok=True)
    (path,) = instances(tmp_path / "sent", 1)
    uid = uid_of(path)
    url = sqlite_url(tmp_path / "catalog.sqlite")
    with Catalog.open(url) as catalog:
        receiver = Receiver(workspace.incoming, catalog)
        temp = workspace.receiving / "0.dcm"
        shutil.copyfile(path, temp)
        workspace.incoming.rmdir()  # the rename into incoming/ fails (ENOENT): our failure
        got = receiver.store(temp, uid, Peer(SCANNER, "127.0.0.1"))
        assert (got.outcome, got.status) == (ReceiveOutcome.NOT_WRITTEN,
                                             StoreStatus.OUT_OF_RESOURCES)  # fmt: skip
        assert catalog.received(uid) is None  # rolled back: no record without its file
        # The rename's own error, not blamed on the catalog (the transaction it ran in).
        assert "No such file or directory" in caplog.text and "StorageError" not in caplog.text
        workspace.incoming.mkdir()
        again = receiver.store(temp, uid, Peer(SCANNER, "127.0.0.1"))  # the sender retries
        assert again.outcome is ReceiveOutcome.STORED
    assert_one_stored(workspace, uid, url)


def assert_one_stored(workspace: Workspace, uid: str, url: str) -> None:
    (stored,) = workspace.incoming.iterdir()
    with Catalog.open(url) as catalog:
        receipt = catalog.received(uid)
    assert receipt is not None and stored.name == f"{receipt.sha256}.dcm"
