"""A private PostgreSQL server for the test run, and a fresh database per test.

Debian's PostgreSQL 15 is installed (``/usr/lib/postgresql/15/bin``), but CI
runs as root and ``pg_ctl`` refuses to run as root.  So the session fixture
:func:`pg_cluster` makes a cluster of its own in a new temp folder owned by
the ``postgres`` user (``initdb`` and ``pg_ctl`` through ``runuser -u
postgres --`` when we are root, directly otherwise), starts it listening on
a Unix socket in that folder only (no TCP port: nothing to collide with,
nothing reachable from the network), with trust authentication and without
fsync (a test server: durability is not what is tested), and stops it
(``-m immediate``) and removes the folder at the end of the session.  It
costs about 1.4 s, once.  Without PostgreSQL or ``runuser`` every test
that asks for it is skipped with the reason.

On top, pytest-postgresql's own factories: :data:`pg_server`
(``postgresql_noproc`` on our cluster: it makes a template database once)
and :data:`pg_database` (``postgresql``: a new database cloned from the
template for each test, dropped after it, as a psycopg connection);
:func:`pg_url` gives that database as a SQLAlchemy URL.  A new database
costs about 0.4 s on this machine (PostgreSQL copies the template's
catalogs), so a suite of many tests shares :func:`pg_session_url` instead
and empties it between tests with :func:`empty_tables`.

Use from a ``conftest.py``::

    from tests.postgres import (  # noqa: F401
        pg_cluster, pg_database, pg_server, pg_session_url, pg_url,
    )
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories
from pytest_postgresql.executors import NoopExecutor
from sqlalchemy import URL, make_url

BIN = Path(os.environ.get("MRICURATE_PG_BIN", "/usr/lib/postgresql/15/bin"))
OWNER = "postgres"
_PORT = 5432  # the socket's name only: the server opens no TCP port
_SESSION_DB = "mricurate_session"
_SETTINGS = {
    "listen_addresses": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "50",
}


class _Server(NoopExecutor):
    """The cluster, as pytest-postgresql's fixtures over an existing server see it.

    Those fixtures clone the template their base names; ours is PostgreSQL's
    own pristine ``template0``, so no database has to be made for it.
    """

    @property
    def template_dbname(self) -> str:
        return "template0"


def _as_owner(command: list[str]) -> list[str]:
    """``command`` run as the cluster's owner: through runuser when we are root."""
    if os.geteuid() != 0:
        return command
    runuser = shutil.which("runuser")
    if runuser is None:
        pytest.skip("PostgreSQL tests need runuser (util-linux) to run the server as postgres")
    return [runuser, "-u", OWNER, "--", *command]


def _missing() -> str | None:
    if not (BIN / "initdb").is_file() or not (BIN / "pg_ctl").is_file():
        return f"PostgreSQL is not installed in {BIN} (Debian: apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(OWNER)
        except KeyError:
            return f"PostgreSQL tests run the server as the {OWNER} user, which does not exist"
    return None


def _run(command: list[str], what: str, log: Path | None = None) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        said = done.stderr.strip()
        if log is not None and log.is_file():  # pg_ctl only says "examine the log file"
            said += "\n" + log.read_text(errors="replace")
        raise RuntimeError(f"{what} failed ({done.returncode}): {said[-2000:]}")


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[NoopExecutor]:
    """A running PostgreSQL server of this test session (user ``postgres``, trust)."""
    missing = _missing()
    if missing:
        pytest.skip(missing)
    folder = Path(tempfile.mkdtemp(prefix="mricurate-pg-"))
    data = folder / "data"
    try:
        if os.geteuid() == 0:
            entry = pwd.getpwnam(OWNER)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        _run(
            _as_owner(
                [
                    str(BIN / "initdb"), "-D", str(data), "-U", OWNER, "-A", "trust",
                    "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
                ]
            ),
            "initdb",
        )  # fmt: skip
        options = " ".join(f"-c {name}={value}" for name, value in _SETTINGS.items())
        _run(
            _as_owner(
                [
                    str(BIN / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                    "-o", f"{options} -c unix_socket_directories={folder} -p {_PORT}",
                    "-w", "-s", "start",
                ]
            ),
            "pg_ctl start",
            folder / "server.log",
        )  # fmt: skip
        try:
            server = _Server(host=str(folder), port=_PORT, user=OWNER, options="", dbname="cluster")
            yield server
        finally:
            _run(
                _as_owner([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-s", "stop"]),
                "pg_ctl stop",
            )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


#: pytest-postgresql's fixture for a server it does not start: ours.
pg_server = factories.postgresql_noproc(dbname="mricurate", depends_on="pg_cluster")
#: A new, empty database for each test (a psycopg connection to it).
pg_database = factories.postgresql("pg_server")


@pytest.fixture(scope="session")
def pg_session_url(pg_cluster: NoopExecutor) -> str:
    """One database for the whole session (it goes with the cluster at the end).

    Creating a database costs about 0.4 s on this machine, too much to make
    one per test of a large suite: tests that share this one empty it
    between them (:func:`empty_tables`).
    """
    with psycopg.connect(
        host=pg_cluster.host, port=pg_cluster.port, user=pg_cluster.user,
        dbname=pg_cluster.maintenance_dbname, autocommit=True,
    ) as admin:  # fmt: skip
        admin.execute(f'CREATE DATABASE "{_SESSION_DB}" TEMPLATE {pg_cluster.template_dbname}')
    return _url(pg_cluster, _SESSION_DB)


def empty_tables(url: str, *, keep: Iterable[str] = ()) -> None:
    """Delete every row of every table of the database's public schema but ``keep``.

    Far cheaper than TRUNCATE on small tables (which makes new files for
    each), and than a new database.  Triggers and foreign keys are set aside
    for it (``session_replication_role = replica``, the cluster's owner may),
    so append-only tables empty like the rest.  Ids do not restart.
    """
    parsed = make_url(url)
    with psycopg.connect(
        dbname=parsed.database, user=parsed.username, autocommit=True,
        **{name: str(value) for name, value in parsed.query.items()},
    ) as connection:  # fmt: skip
        kept = set(keep)
        names = [
            name
            for (name,) in connection.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            )
            if name not in kept
        ]
        with connection.transaction():
            connection.execute("SET LOCAL session_replication_role = replica")
            for name in names:
                connection.execute(f'DELETE FROM "{name}"')


def _url(server: NoopExecutor, dbname: str) -> str:
    return URL.create(
        "postgresql+psycopg",
        username=server.user,
        database=dbname,
        query={"host": server.host, "port": str(server.port)},
    ).render_as_string(hide_password=False)


@pytest.fixture
def pg_url(pg_database: psycopg.Connection[Any], pg_server: NoopExecutor) -> str:
    """This test's new database as a SQLAlchemy URL (psycopg 3, over the Unix socket)."""
    return _url(pg_server, pg_database.info.dbname)
