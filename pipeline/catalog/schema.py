"""The catalog's tables as SQLAlchemy 2 typed declarative models.

These models describe the schema; they never create it.  The Alembic
migrations in ``migrations/versions`` are the only source of the schema in a
database, and a test proves that the models and the migration head agree
(``alembic.autogenerate.compare_metadata`` finds no difference) on SQLite and
PostgreSQL alike.  A change here therefore comes with a new migration.

Conventions, the same in every table:

- an input is known by the sha256 of its content (``sha256`` / ``input_sha256``,
  64 lower-case hex digits); paths are PHI and appear only in ``sightings``
  (as bytes) and in the imported ``links``;
- states, kinds, reasons and decisions are stored as their stable text codes
  (:mod:`pipeline.catalog.states`), with a CHECK constraint naming the codes;
- times are UTC (:class:`UtcDateTime`);
- ``transitions``, ``decisions``, ``redaction_boxes``, ``withdrawals``,
  ``releases``, ``release_files`` and ``phi_views`` are append-only: the
  migrations add triggers that refuse UPDATE and DELETE on them, so history
  cannot be rewritten even by hand;
- a secret (a login token, a session cookie) is kept only as its sha256
  (``*_hash``): a copy of the catalog opens no session.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from pipeline.catalog.states import (
    BoxSource,
    Decision,
    InputKind,
    ItemState,
    PhiView,
    PullOutcome,
    PushOutcome,
    ReviewReason,
    RunStatus,
)

#: Alembic's record of the schema revision.  Not ``alembic_version``: a shared
#: PostgreSQL database may also hold Prefect's server tables, which keep their
#: own revision in ``alembic_version``.
VERSION_TABLE = "catalog_revision"

#: Tables whose rows are never updated or deleted (enforced by triggers).
APPEND_ONLY = (
    "transitions", "decisions", "redaction_boxes", "withdrawals", "releases", "release_files",
    "push_attempts", "phi_views", "pull_attempts",
)  # fmt: skip

#: Where an output lives in the staging area (and later in a release).
OUTPUT_AREAS = ("dicom", "raw", "fastmri")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
SHA256 = String(64)
LINK_KEY = String(80)  # sha256#n: one raw input, many measurements
_CODE_LENGTH = 32  # the longest code ("unknown-private-creator") with room to grow


class UtcDateTime(TypeDecorator[dt.datetime]):
    """An aware UTC datetime on every backend.

    SQLite keeps no time zone: a value is stored as its UTC wall time and
    comes back marked UTC, so both backends return the same aware values.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("catalog times must be aware datetimes (UTC)")
        return value.astimezone(dt.UTC)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


def code_enum(kind: type[enum.Enum], name: str) -> Enum:
    """A column type that stores ``kind``'s values as text, checked by a named constraint."""
    return Enum(
        kind,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=_CODE_LENGTH,
        values_callable=lambda members: [member.value for member in members],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UtcDateTime(), str: Text()}


class RunRow(Base):
    """One run of a command (ingest, deid, convert, withdraw, ...)."""

    __tablename__ = "runs"

    run_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    command: Mapped[str]
    ruleset_version: Mapped[str]
    key_fingerprint: Mapped[str]
    status: Mapped[RunStatus] = mapped_column(code_enum(RunStatus, "run_status"), index=True)
    started_at: Mapped[dt.datetime]
    finished_at: Mapped[dt.datetime | None]
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SightingRow(Base):
    """Where a content hash was seen, for discovery's cache (the path is PHI).

    Keyed by the sha256 of the path's bytes: a path can be longer than an
    index entry may be on PostgreSQL (PATH_MAX is 4096 bytes).
    """

    __tablename__ = "sightings"

    path_digest: Mapped[bytes] = mapped_column(LargeBinary(32), primary_key=True)
    path: Mapped[bytes] = mapped_column(LargeBinary)
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(SHA256, index=True)
    seen_at: Mapped[dt.datetime]


class ItemRow(Base):
    """One input, by content hash, and the state it is in now."""

    __tablename__ = "items"

    sha256: Mapped[str] = mapped_column(SHA256, primary_key=True)
    kind: Mapped[InputKind] = mapped_column(code_enum(InputKind, "input_kind"))
    size: Mapped[int] = mapped_column(BigInteger)
    state: Mapped[ItemState] = mapped_column(code_enum(ItemState, "item_state"), index=True)
    reason: Mapped[str | None]  # the stable code of the latest transition's reason
    registered_run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    updated_at: Mapped[dt.datetime]


class TransitionRow(Base):
    """One change of an item's state (append-only; ordered by ``transition_id``)."""

    __tablename__ = "transitions"
    __table_args__ = (Index(None, "sha256", "transition_id"),)

    transition_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("items.sha256"))
    from_state: Mapped[ItemState | None] = mapped_column(code_enum(ItemState, "from_state"))
    to_state: Mapped[ItemState] = mapped_column(code_enum(ItemState, "to_state"))
    reason: Mapped[str | None]
    # None for a reviewer's decision, which happens outside any run.
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.run_id"))
    at: Mapped[dt.datetime]


class OutputRow(Base):
    """A file a processed input produced in the staging area, and what made it."""

    __tablename__ = "outputs"
    __table_args__ = (
        CheckConstraint(f"area IN {OUTPUT_AREAS!r}", name="area"),
        Index(None, "input_sha256"),
        Index(None, "subject"),
    )

    area: Mapped[str] = mapped_column(String(_CODE_LENGTH), primary_key=True)
    relpath: Mapped[str] = mapped_column(primary_key=True)
    input_sha256: Mapped[str] = mapped_column(ForeignKey("items.sha256"))
    sha256: Mapped[str] = mapped_column(SHA256)
    size: Mapped[int] = mapped_column(BigInteger)
    subject: Mapped[str]
    ruleset_version: Mapped[str]
    key_fingerprint: Mapped[str]
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))


class ReviewRow(Base):
    """An entry of the review queue: one input a person must look at."""

    __tablename__ = "reviews"

    queue_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("items.sha256"), index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    queued_at: Mapped[dt.datetime]


class ReviewReasonRow(Base):
    """Why a queue entry was made (one row per reason)."""

    __tablename__ = "review_reasons"

    queue_id: Mapped[int] = mapped_column(ForeignKey("reviews.queue_id"), primary_key=True)
    reason: Mapped[ReviewReason] = mapped_column(
        code_enum(ReviewReason, "review_reason"), primary_key=True
    )


class DecisionRow(Base):
    """A reviewer's decision on a queue entry (append-only; a later one supersedes)."""

    __tablename__ = "decisions"

    decision_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    queue_id: Mapped[int] = mapped_column(ForeignKey("reviews.queue_id"), index=True)
    sha256: Mapped[str] = mapped_column(ForeignKey("items.sha256"), index=True)
    decision: Mapped[Decision] = mapped_column(code_enum(Decision, "decision"))
    reviewer: Mapped[str]
    reason: Mapped[str]  # the reviewer's words: private, like everything here
    ruleset_version: Mapped[str]
    decided_at: Mapped[dt.datetime]


class RedactionBoxRow(Base):
    """One box a REDACT decision blanks (append-only, like its decision).

    In pixels of the stored image; ``frame`` NULL is every frame.
    """

    __tablename__ = "redaction_boxes"
    __table_args__ = (
        CheckConstraint(
            "x >= 0 AND y >= 0 AND width > 0 AND height > 0 AND (frame IS NULL OR frame >= 0)",
            name="geometry",
        ),
    )

    decision_id: Mapped[int] = mapped_column(ForeignKey("decisions.decision_id"), primary_key=True)
    box_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    frame: Mapped[int | None] = mapped_column(Integer)
    x: Mapped[int] = mapped_column(Integer)
    y: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    source: Mapped[BoxSource] = mapped_column(code_enum(BoxSource, "box_source"))


class ReleaseRow(Base):
    """A published, immutable release version."""

    __tablename__ = "releases"

    release_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(unique=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    created_at: Mapped[dt.datetime]
    changelog: Mapped[dict[str, Any]] = mapped_column(JSON)


class ReleaseFileRow(Base):
    """One file of a release."""

    __tablename__ = "release_files"
    __table_args__ = (Index(None, "input_sha256"),)

    release_id: Mapped[int] = mapped_column(ForeignKey("releases.release_id"), primary_key=True)
    relpath: Mapped[str] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(SHA256)
    size: Mapped[int] = mapped_column(BigInteger)
    input_sha256: Mapped[str] = mapped_column(ForeignKey("items.sha256"))
    subject: Mapped[str]


class LinkRow(Base):
    """Original identifiers of one input and what they became (PHI).

    The columns of ``links`` in :mod:`pipeline.private_store`'s links.sqlite,
    kept as they are: ``run_id`` is that store's run id (text), not a catalog
    run, and every column but the key may be NULL in rows of older versions.
    """

    __tablename__ = "links"
    __table_args__ = (
        Index(None, "patient_id"),
        Index(None, "subject"),
        Index(None, "study_uid"),
        Index(None, "frame_of_reference_uid"),
    )

    # The input's sha256, or ``sha256#n`` for the n-th measurement of a raw file.
    sha256: Mapped[str] = mapped_column(LINK_KEY, primary_key=True)
    run_id: Mapped[str] = mapped_column(primary_key=True)
    patient_id: Mapped[str | None]
    issuer: Mapped[str | None]
    patient_name: Mapped[str | None]
    subject: Mapped[str | None]
    day_offset: Mapped[int | None]
    study_uid: Mapped[str | None]
    new_study_uid: Mapped[str | None]
    series_uid: Mapped[str | None]
    new_series_uid: Mapped[str | None]
    sop_uid: Mapped[str | None]
    new_sop_uid: Mapped[str | None]
    output_path: Mapped[str | None]
    frame_of_reference_uid: Mapped[str | None]
    commit_id: Mapped[int | None]


class WithdrawalRow(Base):
    """A subject's consent revoked (append-only): every later release omits them."""

    __tablename__ = "withdrawals"

    withdrawal_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subject: Mapped[str] = mapped_column(index=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.run_id"))
    at: Mapped[dt.datetime]


class ReceivedRow(Base):
    """An instance the DICOM listener stored in ``incoming/`` (the first copy of its UID).

    The SOP Instance UID is PHI, like everything here; the file's name in
    ``incoming/`` is its content hash.
    """

    __tablename__ = "received"
    __table_args__ = (Index(None, "sha256"),)

    sop_instance_uid: Mapped[str] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(SHA256)
    size: Mapped[int] = mapped_column(BigInteger)
    sop_class_uid: Mapped[str]
    transfer_syntax: Mapped[str]
    calling_ae: Mapped[str]
    peer_address: Mapped[str]
    received_at: Mapped[dt.datetime]


class PushAttemptRow(Base):
    """One file of a release a push tried to send to a node (append-only)."""

    __tablename__ = "push_attempts"
    __table_args__ = (Index(None, "node", "version", "relpath"),)

    attempt_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str]
    version: Mapped[str]
    relpath: Mapped[str]
    sha256: Mapped[str] = mapped_column(SHA256)
    outcome: Mapped[PushOutcome] = mapped_column(code_enum(PushOutcome, "push_outcome"))
    status: Mapped[int | None] = mapped_column(Integer)  # the DIMSE status, None: no answer
    at: Mapped[dt.datetime]


class LoginTokenRow(Base):
    """A one-time login token of the review app: its hash, whose, until when, used when."""

    __tablename__ = "login_tokens"

    token_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_hash: Mapped[str] = mapped_column(SHA256, unique=True)
    reviewer: Mapped[str]
    created_at: Mapped[dt.datetime]
    expires_at: Mapped[dt.datetime]
    used_at: Mapped[dt.datetime | None]


class ReviewSessionRow(Base):
    """A reviewer's session in the review app, kept server-side (the cookie is its secret)."""

    __tablename__ = "review_sessions"

    session_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    secret_hash: Mapped[str] = mapped_column(SHA256, unique=True)
    reviewer: Mapped[str]
    created_at: Mapped[dt.datetime]
    last_seen_at: Mapped[dt.datetime]
    revoked_at: Mapped[dt.datetime | None]
    csrf_token: Mapped[str]  # sent in every form of the session; useless without the cookie


class PhiViewRow(Base):
    """A reviewer was shown an input's PHI (append-only: the access log the audit counts)."""

    __tablename__ = "phi_views"

    view_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("review_sessions.session_id"), index=True)
    reviewer: Mapped[str]
    sha256: Mapped[str] = mapped_column(ForeignKey("items.sha256"), index=True)
    what: Mapped[PhiView] = mapped_column(code_enum(PhiView, "phi_view"))
    at: Mapped[dt.datetime]


class PullAttemptRow(Base):
    """One cohort row a pull asked of a node, and what arrived (append-only).

    The row is named by the hash of what it asks for, never by its accession
    number or patient ID (those stay in the cohort file and the pull's table).
    """

    __tablename__ = "pull_attempts"
    __table_args__ = (Index(None, "node", "query_sha256"),)

    attempt_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    node: Mapped[str]
    query_sha256: Mapped[str] = mapped_column(SHA256)
    outcome: Mapped[PullOutcome] = mapped_column(code_enum(PullOutcome, "pull_outcome"))
    studies: Mapped[int] = mapped_column(Integer)
    instances: Mapped[int] = mapped_column(Integer)
    retrieved: Mapped[int] = mapped_column(Integer)
    status: Mapped[int | None] = mapped_column(Integer)  # the last C-MOVE/C-GET status
    at: Mapped[dt.datetime]
