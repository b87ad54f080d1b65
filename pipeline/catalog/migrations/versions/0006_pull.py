"""Pulling a cohort: each row asked of a node, and what arrived

Revision ID: 0006
Revises: 0005
Create Date: 2027-01-12

``pull_attempts`` is history (append-only, like ``push_attempts``): one row
each time ``mricurate pull`` asked a node for one cohort row, keyed by the
hash of what the row asks for (no accession number or patient ID is kept),
with the studies and instances found, how many of them arrived and the last
retrieve status.  A rerun skips the rows whose last attempt is ``retrieved``.

Written out in full, as every migration is (it never imports the models).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PULL_OUTCOMES = ("retrieved", "missing", "failed")
_PG_FUNCTION = "catalog_append_only"  # created by 0001


def upgrade() -> None:
    listed = ", ".join(f"'{code}'" for code in PULL_OUTCOMES)
    op.create_table(
        "pull_attempts",
        sa.Column("attempt_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("query_sha256", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("studies", sa.Integer(), nullable=False),
        sa.Column("instances", sa.Integer(), nullable=False),
        sa.Column("retrieved", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"outcome IN ({listed})", name=op.f("ck_pull_attempts_pull_outcome")),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_pull_attempts")),
    )
    op.create_index(
        op.f("ix_pull_attempts_node_query_sha256"), "pull_attempts", ["node", "query_sha256"]
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER pull_attempts_append_only BEFORE UPDATE OR DELETE ON pull_attempts "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER pull_attempts_append_only_{action.lower()} BEFORE {action} "
                "ON pull_attempts BEGIN SELECT RAISE(ABORT, 'pull_attempts is append-only'); END"
            )


def downgrade() -> None:
    op.drop_table("pull_attempts")
