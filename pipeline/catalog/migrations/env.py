"""Alembic's environment for the catalog: run only through :mod:`pipeline.catalog.migrate`.

The catalog lives in the private location; there is no ``alembic.ini`` next
to a user's files.  :func:`pipeline.catalog.migrate.upgrade` hands this
module an open connection, already inside the transaction (and, on
PostgreSQL, holding the advisory lock) the whole upgrade runs in.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from pipeline.catalog.schema import VERSION_TABLE, Base


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # SQLite alters a table by copying it: batch mode does that for us.
        render_as_batch=True,
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(connection, Connection):
    raise RuntimeError(
        "the catalog's migrations run through pipeline.catalog.migrate (Catalog.open "
        "upgrades the catalog it opens), not through the alembic command line"
    )
_run(connection)
