"""The review app's access: one-time login tokens, server-side sessions, the PHI access log

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-08

Secrets are kept as their sha256 only (``token_hash``, ``secret_hash``):
whoever reads the catalog cannot open a session with what they find.
``phi_views`` is append-only like the other histories (the PostgreSQL
trigger function ``catalog_append_only`` is 0001's).  Written out in full,
never imported from the models (see 0001).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PHI_VIEWS = ("image", "original-header")
_PG_FUNCTION = "catalog_append_only"


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _sha256() -> sa.String:
    return sa.String(length=64)


def _append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()"
        )
        return
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_append_only_{action.lower()} BEFORE {action} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
        )


def upgrade() -> None:
    op.create_table(
        "login_tokens",
        sa.Column("token_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("token_hash", _sha256(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("expires_at", _time(), nullable=False),
        sa.Column("used_at", _time(), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_login_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_login_tokens_token_hash")),
    )

    op.create_table(
        "review_sessions",
        sa.Column("session_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("secret_hash", _sha256(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("last_seen_at", _time(), nullable=False),
        sa.Column("revoked_at", _time(), nullable=True),
        sa.Column("csrf_token", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name=op.f("pk_review_sessions")),
        sa.UniqueConstraint("secret_hash", name=op.f("uq_review_sessions_secret_hash")),
    )

    listed = ", ".join(f"'{code}'" for code in PHI_VIEWS)
    op.create_table(
        "phi_views",
        sa.Column("view_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("what", sa.String(length=32), nullable=False),
        sa.Column("at", _time(), nullable=False),
        sa.CheckConstraint(f"what IN ({listed})", name=op.f("ck_phi_views_phi_view")),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["review_sessions.session_id"],
            name=op.f("fk_phi_views_session_id_review_sessions"),
        ),
        sa.ForeignKeyConstraint(
            ["sha256"], ["items.sha256"], name=op.f("fk_phi_views_sha256_items")
        ),
        sa.PrimaryKeyConstraint("view_id", name=op.f("pk_phi_views")),
    )
    op.create_index(op.f("ix_phi_views_session_id"), "phi_views", ["session_id"])
    op.create_index(op.f("ix_phi_views_sha256"), "phi_views", ["sha256"])
    _append_only("phi_views")


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers with it.
    for table in ("phi_views", "review_sessions", "login_tokens"):
        op.drop_table(table)
