"""The DICOM network: instances the listener received, and each file a push sent

Revision ID: 0004
Revises: 0003
Create Date: 2027-01-10

``received`` has one row per SOP Instance UID the listener stored (the first
copy: a second one, in any transfer syntax, is not stored again), with the
sending AE title, its address and the time.  ``push_attempts`` is history
(append-only, like ``transitions``): one row per file a push tried to send
to a node and the DIMSE status it got; a rerun sends what has no ``sent`` row.

Written out in full, as every migration is (it never imports the models).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PUSH_OUTCOMES = ("sent", "failed")
_PG_FUNCTION = "catalog_append_only"  # created by 0001


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "received",
        sa.Column("sop_instance_uid", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sop_class_uid", sa.Text(), nullable=False),
        sa.Column("transfer_syntax", sa.Text(), nullable=False),
        sa.Column("calling_ae", sa.Text(), nullable=False),
        sa.Column("peer_address", sa.Text(), nullable=False),
        sa.Column("received_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("sop_instance_uid", name=op.f("pk_received")),
    )
    op.create_index(op.f("ix_received_sha256"), "received", ["sha256"])

    listed = ", ".join(f"'{code}'" for code in PUSH_OUTCOMES)
    op.create_table(
        "push_attempts",
        sa.Column("attempt_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("node", sa.Text(), nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("relpath", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("at", _time(), nullable=False),
        sa.CheckConstraint(f"outcome IN ({listed})", name=op.f("ck_push_attempts_push_outcome")),
        sa.PrimaryKeyConstraint("attempt_id", name=op.f("pk_push_attempts")),
    )
    op.create_index(
        op.f("ix_push_attempts_node_version_relpath"),
        "push_attempts",
        ["node", "version", "relpath"],
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE TRIGGER push_attempts_append_only BEFORE UPDATE OR DELETE ON push_attempts "
            f"FOR EACH ROW EXECUTE FUNCTION {_PG_FUNCTION}()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER push_attempts_append_only_{action.lower()} BEFORE {action} "
                "ON push_attempts BEGIN SELECT RAISE(ABORT, 'push_attempts is append-only'); END"
            )


def downgrade() -> None:
    op.drop_table("push_attempts")
    op.drop_table("received")
