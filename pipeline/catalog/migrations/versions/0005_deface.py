"""Review reasons for defacing: deface-failed and head-kspace

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02

A head volume whose face could not be removed with trust (it could not be
assembled, or the registration failed its quality check) waits for a person
as ``deface-failed``; raw k-space of a head scan, which cannot be defaced,
waits as ``head-kspace`` when rules/deface holds it.  Only the CHECK
constraint of ``review_reasons.reason`` changes (SQLite: the table is copied
in batch mode; it is not append-only, so no trigger is involved).
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BEFORE = (
    "pixel-findings", "leak-check", "unknown-private-creator", "cleaning-doubt", "spot-check",
    "redacted",  # 0002
)  # fmt: skip
AFTER = (*BEFORE, "deface-failed", "head-kspace")
_NAME = "ck_review_reasons_review_reason"


def _replace(codes: Sequence[str]) -> None:
    listed = ", ".join(f"'{code}'" for code in codes)
    with op.batch_alter_table("review_reasons", recreate="always") as batch:
        batch.drop_constraint(op.f(_NAME), type_="check")
        batch.create_check_constraint(op.f(_NAME), f"reason IN ({listed})")


def upgrade() -> None:
    _replace(AFTER)


def downgrade() -> None:
    op.execute("DELETE FROM review_reasons WHERE reason IN ('deface-failed', 'head-kspace')")
    _replace(BEFORE)
