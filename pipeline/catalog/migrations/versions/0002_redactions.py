"""Redactions: the boxes a REDACT decision blanks, and the review reason "redacted"

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

A reviewer who decides REDACT names the boxes to blank (accepted OCR boxes,
region rules' boxes, boxes drawn by hand): ``redaction_boxes`` keeps them,
append-only like the decision they belong to, so the redaction that made a
released file can always be shown.  The re-processed input comes back to
the queue for a person to check the redaction, with the new review reason
``redacted``: the CHECK of ``review_reasons.reason`` is widened.

Like 0001, everything is written out here (no import of the models).
SQLite cannot alter a CHECK constraint: batch mode copies the table, from
the definition given here (``copy_from``), so the result does not depend on
what reflection of CHECK constraints finds.  ``review_reasons`` is not
append-only: no triggers to recreate.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REVIEW_REASONS_0001 = (
    "pixel-findings", "leak-check", "unknown-private-creator", "cleaning-doubt", "spot-check",
)  # fmt: skip
REVIEW_REASONS = (*REVIEW_REASONS_0001, "redacted")
BOX_SOURCES = ("ocr", "region", "drawn")
_PG_FUNCTION = "catalog_append_only"  # created by 0001


def _one_of(table: str, column: str, name: str, codes: Sequence[str]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{code}'" for code in codes)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{name}"))


def append_only_triggers(table: str) -> None:
    """Refuse UPDATE and DELETE on ``table`` (as 0001's function of the same name)."""
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


def _review_reasons(codes: Sequence[str]) -> sa.Table:
    """``review_reasons`` as 0001 made it, its reason one of ``codes``."""
    return sa.Table(
        "review_reasons",
        sa.MetaData(),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        _one_of("review_reasons", "reason", "review_reason", codes),
        sa.ForeignKeyConstraint(
            ["queue_id"], ["reviews.queue_id"], name=op.f("fk_review_reasons_queue_id_reviews")
        ),
        sa.PrimaryKeyConstraint("queue_id", "reason", name=op.f("pk_review_reasons")),
    )


def _set_review_reasons(codes: Sequence[str]) -> None:
    """Make ``review_reasons.reason``'s CHECK list ``codes``."""
    if op.get_bind().dialect.name == "postgresql":
        op.drop_constraint(op.f("ck_review_reasons_review_reason"), "review_reasons", type_="check")
        listed = ", ".join(f"'{code}'" for code in codes)
        op.create_check_constraint(
            op.f("ck_review_reasons_review_reason"), "review_reasons", f"reason IN ({listed})"
        )
        return
    with op.batch_alter_table(
        "review_reasons", copy_from=_review_reasons(codes), recreate="always"
    ):
        pass


def upgrade() -> None:
    op.create_table(
        "redaction_boxes",
        sa.Column("decision_id", sa.Integer(), nullable=False),
        sa.Column("box_index", sa.Integer(), nullable=False),
        sa.Column("frame", sa.Integer(), nullable=True),  # NULL: every frame
        sa.Column("x", sa.Integer(), nullable=False),
        sa.Column("y", sa.Integer(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        _one_of("redaction_boxes", "source", "box_source", BOX_SOURCES),
        sa.CheckConstraint(
            "x >= 0 AND y >= 0 AND width > 0 AND height > 0 AND (frame IS NULL OR frame >= 0)",
            name=op.f("ck_redaction_boxes_geometry"),
        ),
        sa.ForeignKeyConstraint(
            ["decision_id"],
            ["decisions.decision_id"],
            name=op.f("fk_redaction_boxes_decision_id_decisions"),
        ),
        sa.PrimaryKeyConstraint("decision_id", "box_index", name=op.f("pk_redaction_boxes")),
    )
    append_only_triggers("redaction_boxes")
    _set_review_reasons(REVIEW_REASONS)


def downgrade() -> None:
    op.execute("DELETE FROM review_reasons WHERE reason = 'redacted'")
    _set_review_reasons(REVIEW_REASONS_0001)
    op.drop_table("redaction_boxes")  # its triggers go with it
