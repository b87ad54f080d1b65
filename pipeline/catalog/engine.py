"""Connecting to the catalog's database: a SQLite file under ``private/``, or PostgreSQL.

SQLite is the default: one file (mode 0600, like everything in the private
location) with its write-ahead log, so readers never wait for the writer;
foreign keys on (SQLite leaves them off unless asked, per connection); and
a busy timeout, so a second process waits for the lock instead of failing.
A transaction that writes starts with ``BEGIN IMMEDIATE``: it takes the
write lock before it reads the state it validates, so two processes cannot
both see an input as NEW and both move it on.  Python's sqlite3 module
would otherwise open transactions itself, lazily and deferred; it is told
not to (``isolation_level = None``) and SQLAlchemy's ``begin`` event emits
the ``BEGIN`` instead (SQLAlchemy's documented recipe for pysqlite).

PostgreSQL is for a shared deployment: any ``postgresql://`` URL, through
psycopg 3.  There, the rows a write validates are read ``FOR UPDATE``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc

from pipeline.catalog.errors import CatalogError
from pipeline.errors import StorageError
from pipeline.storage import probe, sqlite_os_error

#: Execution option of a connection whose transaction writes (BEGIN IMMEDIATE on SQLite).
WRITE = "mricurate_catalog_write"
#: The catalog's file name in the private location.
DEFAULT_FILENAME = "catalog.sqlite"
#: How long a SQLite connection waits for another process's write lock.
BUSY_TIMEOUT_SECONDS = 60
_AREA = "the catalog"
# PostgreSQL's SQLSTATEs for our own storage failing (class 53 and 58).
_PG_STORAGE = {"53100": errno.ENOSPC, "58030": errno.EIO}


def sqlite_url(path: Path) -> str:
    """The catalog URL of a SQLite file (any character of the path survives the URL)."""
    return URL.create("sqlite", database=str(path)).render_as_string(hide_password=False)


def default_url(private_dir: Path) -> str:
    """The catalog's URL in a private location: ``private/catalog.sqlite``."""
    return sqlite_url(private_dir / DEFAULT_FILENAME)


def describe(url: URL) -> str:
    """The URL for a message: never the password."""
    return url.render_as_string(hide_password=True)


def create_catalog_engine(url: str) -> tuple[Engine, Path | None]:
    """An engine for the catalog at ``url`` and, for SQLite, the folder of its file.

    Raises
    ------
    CatalogError
        The URL is not SQLite or PostgreSQL, names an in-memory database, or
        its folder does not exist.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise CatalogError(
            "the catalog URL is not a database URL: give sqlite:///PATH or "
            "postgresql://USER@HOST/DATABASE"
        ) from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed)
    if backend == "postgresql":
        if parsed.drivername == "postgresql":
            parsed = parsed.set(drivername="postgresql+psycopg")  # installed; psycopg2 is not
        # Parameters can be PHI (paths, patient IDs): never in an error message or log.
        return create_engine(parsed, pool_pre_ping=True, hide_parameters=True), None
    raise CatalogError(
        f"the catalog is SQLite or PostgreSQL, not {backend}: give sqlite:///PATH or "
        "postgresql://USER@HOST/DATABASE"
    )


def _sqlite_engine(url: URL) -> tuple[Engine, Path]:
    database = url.database or ""
    if database in ("", ":memory:") or database.startswith("file:") or url.query:
        raise CatalogError(
            f"the catalog must be a SQLite file (sqlite:///PATH), not {describe(url)}: "
            "a catalog in memory would forget every run"
        )
    path = Path(database).absolute()
    if not path.parent.is_dir():
        raise CatalogError(
            f"the folder of the catalog, {path.parent}, does not exist: create the "
            "workspace (mricurate init) or give a catalog URL in an existing folder"
        )
    with storage_errors(path.parent):
        _private_file(path)
    engine = create_engine(
        url.set(database=str(path)),
        connect_args={"timeout": BUSY_TIMEOUT_SECONDS},
        hide_parameters=True,
    )
    event.listen(engine, "connect", _on_sqlite_connect)
    event.listen(engine, "begin", _on_sqlite_begin)
    return engine, path.parent


def _private_file(path: Path) -> None:
    """Create the file with mode 0600 before SQLite does (SQLite gives its WAL the same mode)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)


def _on_sqlite_connect(dbapi_connection: Any, _record: object) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is ours (see _on_sqlite_begin)
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_SECONDS * 1000}")
    finally:
        cursor.close()


def _on_sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


@contextlib.contextmanager
def storage_errors(folder: Path | None) -> Iterator[None]:
    """Report our own storage failing (a full disk, a read-only file) as a StorageError.

    Like every write of mricurate, a catalog that cannot be written is a run
    failure that blames no input; SQLAlchemy wraps the driver's error, which
    says which failure it is.
    """
    try:
        yield
    except OSError as exc:
        raise StorageError(_AREA, folder, exc) from None
    except (sa_exc.OperationalError, sqlite3.OperationalError) as exc:
        orig = exc.orig if isinstance(exc, sa_exc.OperationalError) else exc
        if folder is not None and "unable to open" in str(orig):
            # SQLite cannot make its WAL index (-shm) on a read-only or full
            # file system: the folder itself says which it is.
            probe({_AREA: folder})
        error = _os_error(orig)
        if error is None:
            raise
        raise StorageError(_AREA, folder, error) from None


def _os_error(orig: BaseException | None) -> OSError | None:
    if isinstance(orig, sqlite3.Error):
        return sqlite_os_error(orig)
    number = _PG_STORAGE.get(str(getattr(orig, "sqlstate", "") or ""))
    return OSError(number, os.strerror(number)) if number else None
