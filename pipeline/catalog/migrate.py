"""The catalog's schema, brought to a revision by the Alembic migrations shipped here.

The migrations (``migrations/versions``) are the only source of the schema:
the product never calls ``metadata.create_all``.  They run programmatically,
from a :class:`alembic.config.Config` built in code, never from an
``alembic.ini`` beside the user's files, and inside one transaction that
first takes the write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock
on PostgreSQL): two processes opening a new catalog at once cannot both
create its tables, and a failed upgrade leaves the schema as it was
(PostgreSQL and SQLite both have transactional DDL).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from pipeline.catalog.engine import WRITE, describe
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.schema import VERSION_TABLE

MIGRATIONS = Path(__file__).with_name("migrations")
# pg_advisory_xact_lock's key for "migrating the catalog" (any constant of ours).
_LOCK_KEY = 0x6D7269_6361  # "mri" "ca"


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic's configuration, built in code; ``connection`` is what env.py migrates."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.cache
def _scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head() -> str:
    """The newest revision this version of mricurate knows."""
    revision = _scripts().get_current_head()
    if revision is None:  # pragma: no cover - the package ships its migrations
        raise CatalogError("no catalog migrations were found: reinstall mricurate")
    return revision


def current(connection: Connection) -> str | None:
    """The revision the database at ``connection`` is at (None: empty)."""
    context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Bring the catalog to ``revision``; return the revision it is at.

    Raises
    ------
    CatalogError
        The catalog was upgraded by a newer mricurate than this one.
    """
    with _locked(engine) as connection:
        found = current(connection)
        _known(engine, found)
        if found != (head() if revision == "head" else revision):
            command.upgrade(alembic_config(connection), revision)
        return current(connection) or ""


def downgrade(engine: Engine, revision: str) -> str | None:
    """Take the catalog back to ``revision`` (``"base"``: no tables at all)."""
    with _locked(engine) as connection:
        _known(engine, current(connection))
        command.downgrade(alembic_config(connection), revision)
        return current(connection)


@functools.cache
def _known_revisions() -> frozenset[str]:
    return frozenset(script.revision for script in _scripts().walk_revisions())


def _known(engine: Engine, found: str | None) -> None:
    if found is not None and found not in _known_revisions():
        raise CatalogError(
            f"the catalog {describe(engine.url)} is at revision {found}, which this "
            f"version of mricurate does not know (its newest is {head()}): a newer "
            "mricurate upgraded it; run that version, or upgrade this one"
        )


@contextlib.contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    """A connection inside one write transaction that holds the migration lock."""
    with engine.connect() as connection:
        connection.execution_options(**{WRITE: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
            yield connection
