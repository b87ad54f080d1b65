"""The migrations are the schema: they agree with the models, upgrade, reopen, downgrade."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import exc as sa_exc

from pipeline.catalog import (
    Catalog,
    CatalogError,
    InputKind,
    ItemState,
    StateChange,
    migrate,
    sqlite_url,
)
from pipeline.catalog.engine import create_catalog_engine
from pipeline.catalog.schema import APPEND_ONLY, VERSION_TABLE, Base
from tests.catalog.conftest import sha

TABLES = {table.name for table in Base.metadata.sorted_tables}


def tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names()) - {VERSION_TABLE}


def test_upgrade_matches_the_models_reopens_and_downgrades(empty_url: str) -> None:
    engine, _ = create_catalog_engine(empty_url)
    try:
        assert tables(engine) == set() and migrate.upgrade(engine) == migrate.head()
        assert tables(engine) == TABLES
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection,
                opts={"version_table": VERSION_TABLE, "compare_type": True,
                      "target_metadata": Base.metadata},
            )  # fmt: skip
            assert compare_metadata(context, Base.metadata) == []
        with Catalog.open(empty_url) as catalog:  # opened twice: nothing changes
            assert catalog.schema_revision == migrate.head()
            run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
            catalog.register([(sha(1), InputKind.DICOM, 1)], run)
        with Catalog.open(empty_url) as catalog:
            assert catalog.schema_revision == migrate.head()
            assert catalog.state_of(sha(1)) is ItemState.NEW
        assert migrate.downgrade(engine, "base") is None
        assert tables(engine) == set()
        assert migrate.upgrade(engine) == migrate.head()  # and up again from nothing
        assert tables(engine) == TABLES
    finally:
        engine.dispose()


def test_a_catalog_from_a_newer_mricurate_is_refused(catalog_url: str) -> None:
    engine, _ = create_catalog_engine(catalog_url)
    try:
        with engine.begin() as connection:
            connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = 'f00d'"))
        with pytest.raises(
            CatalogError, match="revision f00d, which this version of mricurate does not know"
        ):
            Catalog.open(catalog_url)
    finally:
        with engine.begin() as connection:  # the PostgreSQL database is the session's
            connection.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = :head"),
                               {"head": migrate.head()})  # fmt: skip
        engine.dispose()


def test_history_tables_refuse_update_and_delete(
    catalog: Catalog, catalog_url: str, run: int
) -> None:
    """Append-only is the database's rule, not only the API's: even SQL by hand is refused."""
    catalog.register([(sha(1), InputKind.DICOM, 1)], run)
    catalog.transition([StateChange(sha(1), ItemState.PROCESSED)], run)
    engine, _ = create_catalog_engine(catalog_url)
    try:
        for statement in ("UPDATE transitions SET reason = 'x'", "DELETE FROM transitions"):
            with (
                pytest.raises(sa_exc.DatabaseError, match="append-only"),
                engine.begin() as connection,
            ):
                connection.execute(sa.text(statement))
        with engine.connect() as connection:
            names = {
                row[0]
                for row in connection.execute(
                    sa.text("SELECT name FROM sqlite_master WHERE type = 'trigger'")
                    if engine.dialect.name == "sqlite"
                    else sa.text(
                        "SELECT DISTINCT event_object_table FROM information_schema.triggers"
                    )
                )
            }
        assert {name.split("_append_only")[0] for name in names} == set(APPEND_ONLY)
    finally:
        engine.dispose()
    assert [t.to_state for t in catalog.history(sha(1))] == [ItemState.NEW, ItemState.PROCESSED]


def test_the_sqlite_file_is_private_with_wal_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "private" / "catalog.sqlite"
    path.parent.mkdir(mode=0o700)
    with Catalog.open(sqlite_url(path)) as catalog:
        run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
        catalog.register([(sha(1), InputKind.DICOM, 1)], run)
        for name in (
            path,
            path.with_name("catalog.sqlite-wal"),
            path.with_name("catalog.sqlite-shm"),
        ):
            assert stat.S_IMODE(name.stat().st_mode) == 0o600, name
        engine, _ = create_catalog_engine(sqlite_url(path))
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == 60_000
            connection.rollback()
            with pytest.raises(sa_exc.IntegrityError, match="FOREIGN KEY"), connection.begin():
                connection.exec_driver_sql(
                    "INSERT INTO transitions (sha256, to_state, at) VALUES ('0', 'new', '2026-01-01')"
                )
        engine.dispose()


def test_an_existing_file_is_made_private(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Catalog.open(sqlite_url(path)).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite://", "must be a SQLite file"),
        ("sqlite:///:memory:", "must be a SQLite file"),
        ("mysql://user:secret@host/db", "SQLite or PostgreSQL, not mysql"),
        ("not a url", "not a database URL"),
    ],
)
def test_unusable_urls_are_refused_without_their_password(url: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message) as refused:
        Catalog.open(url)
    assert "secret" not in str(refused.value)


def test_a_missing_folder_is_refused_and_any_path_survives_the_url(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        Catalog.open(sqlite_url(tmp_path / "no-such-workspace" / "private" / "catalog.sqlite"))
    odd = tmp_path / "a #?%&=+ b" / "catalog.sqlite"
    odd.parent.mkdir()
    Catalog.open(sqlite_url(odd)).close()
    assert odd.is_file()


def test_a_catalog_that_cannot_be_opened_says_so(tmp_path: Path) -> None:
    garbage = tmp_path / "catalog.sqlite"
    garbage.write_bytes(b"this is not a database " * 200)
    with pytest.raises(CatalogError, match=r"cannot open the catalog .*not a database"):
        Catalog.open(sqlite_url(garbage))
    nowhere = f"postgresql://mricurate:secret@/catalog?host={tmp_path / 'no-server'}"
    with pytest.raises(
        CatalogError, match=r"cannot open the catalog .*server that is running"
    ) as failed:
        Catalog.open(nowhere)
    assert "secret" not in str(failed.value)


def test_database_errors_never_show_their_parameters(catalog: Catalog, catalog_url: str) -> None:
    """Values bound to a statement may be PHI: SQLAlchemy is told to hide them from errors."""
    engine, _ = create_catalog_engine(catalog_url)
    row = {
        "sha256": sha(1),
        "run_id": "r",
        "patient_name": "DOE^PLANTED",
        "patient_id": "PID-PLANTED",
    }
    insert = sa.text("INSERT INTO links (sha256, run_id, patient_name, patient_id) "
                     "VALUES (:sha256, :run_id, :patient_name, :patient_id)")  # fmt: skip
    try:
        with engine.begin() as connection:
            connection.execute(insert, row)
        with pytest.raises(sa_exc.IntegrityError) as failed, engine.begin() as connection:
            connection.execute(insert, row)
    finally:
        engine.dispose()
    assert "PLANTED" not in str(failed.value) and "hidden" in str(failed.value)
