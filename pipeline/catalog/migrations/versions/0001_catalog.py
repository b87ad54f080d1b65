"""The catalog: runs, sightings, items and their transitions, outputs, review queue, releases, links

Revision ID: 0001
Revises:
Create Date: 2026-12-01

A migration is history: it never imports pipeline.catalog.schema (the models
move on, this file must keep building the schema it built), so every name,
code and constraint is written out here.  SQLite alters tables through batch
mode (a copy of the table): a later migration that rebuilds an append-only
table recreates its triggers (:func:`append_only_triggers`).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ITEM_STATES = (
    "new", "processed", "needs-review", "verified", "released", "quarantined", "withdrawn",
)  # fmt: skip
INPUT_KINDS = ("dicom", "twix", "ismrmrd", "dicomdir", "other")
REVIEW_REASONS = (
    "pixel-findings", "leak-check", "unknown-private-creator", "cleaning-doubt", "spot-check",
)  # fmt: skip
DECISIONS = ("approve", "reject", "redact")
RUN_STATUSES = ("running", "completed", "failed", "crashed")
OUTPUT_AREAS = ("dicom", "raw", "fastmri")
APPEND_ONLY = ("transitions", "decisions", "withdrawals", "releases", "release_files")
_PG_FUNCTION = "catalog_append_only"


def _code() -> sa.String:
    return sa.String(length=32)


def _sha256() -> sa.String:
    return sa.String(length=64)


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _one_of(table: str, column: str, name: str, codes: Sequence[str]) -> sa.CheckConstraint:
    listed = ", ".join(f"'{code}'" for code in codes)
    return sa.CheckConstraint(f"{column} IN ({listed})", name=op.f(f"ck_{table}_{name}"))


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    referred = target.partition(".")[0]
    return sa.ForeignKeyConstraint([column], [target], name=op.f(f"fk_{table}_{column}_{referred}"))


def _pk(table: str, *columns: str) -> sa.PrimaryKeyConstraint:
    return sa.PrimaryKeyConstraint(*columns, name=op.f(f"pk_{table}"))


def _index(table: str, *columns: str) -> None:
    op.create_index(op.f(f"ix_{table}_{'_'.join(columns)}"), table, list(columns))


def append_only_triggers(table: str) -> None:
    """Refuse UPDATE and DELETE on ``table``: history is appended, never rewritten."""
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
        "runs",
        sa.Column("run_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("command", sa.Text(), nullable=False),
        sa.Column("ruleset_version", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.Text(), nullable=False),
        sa.Column("status", _code(), nullable=False),
        sa.Column("started_at", _time(), nullable=False),
        sa.Column("finished_at", _time(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        _one_of("runs", "status", "run_status", RUN_STATUSES),
        _pk("runs", "run_id"),
    )
    _index("runs", "status")

    op.create_table(
        "sightings",
        sa.Column("path_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("path", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("seen_at", _time(), nullable=False),
        _pk("sightings", "path_digest"),
    )
    _index("sightings", "sha256")

    op.create_table(
        "items",
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("kind", _code(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("state", _code(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("registered_run_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        _one_of("items", "kind", "input_kind", INPUT_KINDS),
        _one_of("items", "state", "item_state", ITEM_STATES),
        _fk("items", "registered_run_id", "runs.run_id"),
        _pk("items", "sha256"),
    )
    _index("items", "state")

    op.create_table(
        "transitions",
        sa.Column("transition_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("from_state", _code(), nullable=True),
        sa.Column("to_state", _code(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("at", _time(), nullable=False),
        _one_of("transitions", "from_state", "from_state", ITEM_STATES),
        _one_of("transitions", "to_state", "to_state", ITEM_STATES),
        _fk("transitions", "sha256", "items.sha256"),
        _fk("transitions", "run_id", "runs.run_id"),
        _pk("transitions", "transition_id"),
    )
    _index("transitions", "sha256", "transition_id")

    op.create_table(
        "outputs",
        sa.Column("area", _code(), nullable=False),
        sa.Column("relpath", sa.Text(), nullable=False),
        sa.Column("input_sha256", _sha256(), nullable=False),
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("ruleset_version", sa.Text(), nullable=False),
        sa.Column("key_fingerprint", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        _one_of("outputs", "area", "area", OUTPUT_AREAS),
        _fk("outputs", "input_sha256", "items.sha256"),
        _fk("outputs", "run_id", "runs.run_id"),
        _pk("outputs", "area", "relpath"),
    )
    _index("outputs", "input_sha256")
    _index("outputs", "subject")

    op.create_table(
        "reviews",
        sa.Column("queue_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("queued_at", _time(), nullable=False),
        _fk("reviews", "sha256", "items.sha256"),
        _fk("reviews", "run_id", "runs.run_id"),
        _pk("reviews", "queue_id"),
    )
    _index("reviews", "sha256")

    op.create_table(
        "review_reasons",
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("reason", _code(), nullable=False),
        _one_of("review_reasons", "reason", "review_reason", REVIEW_REASONS),
        _fk("review_reasons", "queue_id", "reviews.queue_id"),
        _pk("review_reasons", "queue_id", "reason"),
    )

    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("queue_id", sa.Integer(), nullable=False),
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("decision", _code(), nullable=False),
        sa.Column("reviewer", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ruleset_version", sa.Text(), nullable=False),
        sa.Column("decided_at", _time(), nullable=False),
        _one_of("decisions", "decision", "decision", DECISIONS),
        _fk("decisions", "queue_id", "reviews.queue_id"),
        _fk("decisions", "sha256", "items.sha256"),
        _pk("decisions", "decision_id"),
    )
    _index("decisions", "queue_id")
    _index("decisions", "sha256")

    op.create_table(
        "releases",
        sa.Column("release_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("version", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("changelog", sa.JSON(), nullable=False),
        _fk("releases", "run_id", "runs.run_id"),
        _pk("releases", "release_id"),
        sa.UniqueConstraint("version", name=op.f("uq_releases_version")),
    )

    op.create_table(
        "release_files",
        sa.Column("release_id", sa.Integer(), nullable=False),
        sa.Column("relpath", sa.Text(), nullable=False),
        sa.Column("sha256", _sha256(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("input_sha256", _sha256(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        _fk("release_files", "release_id", "releases.release_id"),
        _fk("release_files", "input_sha256", "items.sha256"),
        _pk("release_files", "release_id", "relpath"),
    )
    _index("release_files", "input_sha256")

    # The columns of pipeline.private_store's links table, as they are there.
    op.create_table(
        "links",
        sa.Column("sha256", sa.String(length=80), nullable=False),
        sa.Column("run_id", sa.Text(), nullable=False),
        *(
            sa.Column(name, sa.Text(), nullable=True)
            for name in ("patient_id", "issuer", "patient_name", "subject")
        ),
        sa.Column("day_offset", sa.Integer(), nullable=True),
        *(
            sa.Column(name, sa.Text(), nullable=True)
            for name in (
                "study_uid",
                "new_study_uid",
                "series_uid",
                "new_series_uid",
                "sop_uid",
                "new_sop_uid",
                "output_path",
                "frame_of_reference_uid",
            )
        ),
        sa.Column("commit_id", sa.Integer(), nullable=True),
        _pk("links", "sha256", "run_id"),
    )
    for column in ("patient_id", "subject", "study_uid", "frame_of_reference_uid"):
        _index("links", column)

    op.create_table(
        "withdrawals",
        sa.Column("withdrawal_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("at", _time(), nullable=False),
        _fk("withdrawals", "run_id", "runs.run_id"),
        _pk("withdrawals", "withdrawal_id"),
    )
    _index("withdrawals", "subject")

    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE FUNCTION {_PG_FUNCTION}() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
    for table in APPEND_ONLY:
        append_only_triggers(table)


def downgrade() -> None:
    # Dropping a table drops its indexes and triggers with it.
    for table in (
        "withdrawals", "links", "release_files", "releases", "decisions", "review_reasons",
        "reviews", "outputs", "transitions", "items", "sightings", "runs",
    ):  # fmt: skip
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP FUNCTION {_PG_FUNCTION}()")
