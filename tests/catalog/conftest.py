"""Every test of the catalog runs against SQLite and PostgreSQL (the ``backend`` parameter).

A test gets a catalog at the newest schema with nothing in it: on SQLite a
copy of a file migrated once per session, on PostgreSQL the session's
database emptied (a new database costs 0.4 s here; migrating one 0.3 s).
The migration tests themselves start from truly empty databases
(``empty_url``).
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.catalog import Catalog, OutputRecord, sqlite_url
from pipeline.catalog.schema import VERSION_TABLE
from tests.postgres import (  # noqa: F401
    empty_tables,
    pg_cluster,
    pg_database,
    pg_server,
    pg_session_url,
    pg_url,
)

BACKENDS = ("sqlite", "postgresql")


def sha(label: object) -> str:
    """A content hash for a test input (any label: a number, a name)."""
    return hashlib.sha256(str(label).encode()).hexdigest()


def staged(catalog: Catalog, run: int, *items: str) -> None:
    """Record one staged output per input, as a run does before an input is queued.

    An approval releases an output: approving an input without one is refused.
    """
    catalog.record_outputs(
        [OutputRecord(item, "dicom", f"{item[:8]}.dcm", sha(("out", item)), 10, "sub-1",
                      "rules-1", "key-1", run) for item in items]
    )  # fmt: skip


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "catalog.sqlite"
    Catalog.open(sqlite_url(path)).close()
    return path


@pytest.fixture(scope="session")
def pg_catalog_url(pg_session_url: str) -> str:  # noqa: F811
    Catalog.open(pg_session_url).close()  # migrated once for the session
    return pg_session_url


@pytest.fixture
def catalog_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a catalog at the newest schema that holds nothing."""
    if backend == "sqlite":
        path = tmp_path / "catalog.sqlite"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        path.chmod(0o600)
        return sqlite_url(path)
    url: str = request.getfixturevalue("pg_catalog_url")
    empty_tables(url, keep=[VERSION_TABLE])
    return url


@pytest.fixture
def empty_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a database with no tables at all (a new file, a new database)."""
    if backend == "sqlite":
        return sqlite_url(tmp_path / "catalog.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def catalog(catalog_url: str) -> Iterator[Catalog]:
    with Catalog.open(catalog_url) as opened:
        yield opened


@pytest.fixture
def run(catalog: Catalog) -> int:
    return catalog.start_run("ingest", ruleset_version="rules-1", key_fingerprint="key-1")
