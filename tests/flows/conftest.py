"""One Prefect server for every flows test, configured as the product configures it.

Prefect is configured here, at import, before any test module imports it
(:func:`flows.environment.configure`: Prefect ignores settings changed after
its import).  The session's Prefect home is a private location of its own.

The session server is the product's :class:`flows.server.LocalServer`, not
``prefect_test_harness``: the harness starts Prefect's *ephemeral* server,
whose scheduler never runs (the scheduled-run test needs one that does) and
whose database lives in a temporary folder outside ``PREFECT_HOME`` (the PHI
tests read what is under ``PREFECT_HOME``).  One server instead of two
saves a start: each costs about 8 s of imports, and the first on a new
database another 11 s of migrations.  Like the harness, the fixture points
this process at the server and turns flow heartbeats off through
``temporary_settings`` (the setting cannot be switched off by environment
variable; the product keeps them on).

Prefect's own SQLite server logs ``database is locked`` errors under load (a
known open Prefect issue); no test here reads its log for errors.
"""

from __future__ import annotations

import inspect
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from flows.environment import configure

SESSION = Path(tempfile.mkdtemp(prefix="mricurate-flows-"))
PREFECT_HOME = SESSION / "private" / "prefect"
configure(PREFECT_HOME)  # before anything imports prefect

import pytest  # noqa: E402
from prefect.events.worker import EventsWorker  # noqa: E402
from prefect.logging.handlers import APILogWorker  # noqa: E402
from prefect.settings import (  # noqa: E402
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    temporary_settings,
)
from prefect.utilities.asyncutils import run_coro_as_sync  # noqa: E402

from flows.server import LocalServer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]

SERVER_SETTINGS = {
    # Look for deployments to schedule every second, not every minute.
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
}
"""The session server's settings beyond the product's: a shorter scheduler loop."""

_TEMPLATE = SESSION / "template"
_SERVER = LocalServer(PREFECT_HOME, environment=SERVER_SETTINGS)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    """Start the server as soon as a selected test needs it; it boots while others run.

    Under pytest-xdist every worker collects every test: the tests of this
    folder that use the server run in one worker (the ``prefect`` group),
    which starts the one server when its first test asks for it; the others
    (settings, a patch, a subprocess of their own) go to either worker.
    ``tryfirst``: xdist's worker reads the group marks in its own hook of
    this name, which otherwise runs first and finds none (every flows test
    then ran on either worker, and each worker started a server).
    """
    here = Path(__file__).parent
    for item in items:
        uses_server = "prefect_server" in getattr(item, "fixturenames", ())
        if uses_server and Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.xdist_group("prefect"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    if any("prefect_server" in getattr(item, "fixturenames", ()) for item in items):
        _SERVER.start(wait=False)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _SERVER.stop()
    shutil.rmtree(SESSION, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_home() -> Path:
    """The Prefect home this process is configured with (its server's database is in it)."""
    return PREFECT_HOME


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[LocalServer]:
    """The session's Prefect server; this process's flows run against it, heartbeats off."""
    with _SERVER as server:  # started at collection: here it is waited for
        _keep_template(PREFECT_HOME)
        with temporary_settings(
            {PREFECT_API_URL: server.api_url, PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
        ):
            yield server
            run_coro_as_sync(_drain())  # what the flows sent, before the server stops


async def _drain() -> None:
    """Send the logs and events still queued in this process (as ``prefect_test_harness`` does)."""
    for drained in (APILogWorker.instance().drain(), EventsWorker.drain_all()):
        if inspect.isawaitable(drained):
            await drained


@pytest.fixture
def migrated_prefect_home(prefect_server: LocalServer, tmp_path: Path) -> Path:
    """A new Prefect home whose database is already migrated (a copy made at session start).

    A server started on it is up in about 10 s instead of 20: for tests that
    need a server of their own (an orphaned ephemeral server, a crash).
    """
    home = tmp_path / "private" / "prefect"
    home.mkdir(parents=True, mode=0o700)
    shutil.copy2(_TEMPLATE / "prefect.db", home / "prefect.db")
    return home


def child_environment(**extra: str) -> dict[str, str]:
    """A subprocess's environment: this checkout first on the import path.

    The product's Prefect settings are *not* passed on: the child configures
    Prefect itself, as ``mricurate`` does, so that it is the owner of what it
    starts.
    """
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("PREFECT_") and name != "MRICURATE_PREFECT_OWNER"
    }
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO), environment.get("PYTHONPATH", "")) if part
    )
    return {**environment, **extra}


def start_python(code: str, *arguments: str, log: Path, **extra: str) -> subprocess.Popen[bytes]:
    """``python -c CODE ARGUMENTS`` in its own process, its output into ``log``."""
    with log.open("ab") as output:
        return subprocess.Popen(
            [sys.executable, "-c", code, *arguments],
            env=child_environment(**extra),
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
        )


StartChild = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_child(tmp_path: Path) -> Iterator[StartChild]:
    """Start Python children; any still running at the end of the test is stopped."""
    children: list[subprocess.Popen[bytes]] = []

    def start(code: str, *arguments: str, **extra: str) -> subprocess.Popen[bytes]:
        child = start_python(code, *arguments, log=tmp_path / "children.log", **extra)
        children.append(child)
        return child

    yield start
    for child in children:  # SIGTERM first: a serve stops the runs it started
        if child.poll() is None:
            child.terminate()
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _keep_template(home: Path) -> None:
    """A consistent copy of the freshly migrated database (SQLite's backup API, server running)."""
    _TEMPLATE.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{home / 'prefect.db'}?mode=ro", uri=True, timeout=30)
    target = sqlite3.connect(_TEMPLATE / "prefect.db")
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()


# The end-to-end flow test runs on PostgreSQL too.
from tests.postgres import pg_cluster, pg_database, pg_server, pg_url  # noqa: E402, F401
