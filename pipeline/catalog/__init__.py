"""The catalog: every input by content hash, its state and history, runs, outputs, reviews, releases.

A real database through SQLAlchemy 2, its schema owned by the Alembic
migrations shipped in ``migrations/``: a SQLite file in the private location
by default (:func:`default_url`), any PostgreSQL URL for a shared
deployment.  It holds PHI (paths, the link table, reviewers' words) and so
lives in the private location only.

    with Catalog.open(default_url(private_dir)) as catalog:
        run = catalog.start_run("ingest", ruleset_version=..., key_fingerprint=...)
        new = catalog.register([(sha256, InputKind.DICOM, size)], run)
        catalog.transition([StateChange(sha256, ItemState.PROCESSED)], run)
"""

from __future__ import annotations

from pipeline.catalog.catalog import DECISION_MOVES, Catalog
from pipeline.catalog.engine import DEFAULT_FILENAME, default_url, sqlite_url
from pipeline.catalog.errors import AccessRefused, CatalogError, IllegalTransition, UnknownItem
from pipeline.catalog.records import (
    REASON_CODES,
    DecisionRecord,
    ItemRecord,
    ItemTransition,
    OriginalValues,
    OutputRecord,
    PhiViewRecord,
    PullAttempt,
    PushAttempt,
    Receipt,
    RedactionBox,
    ReleaseEntry,
    ReleaseFile,
    ReleaseRecord,
    ReviewItem,
    ReviewProgress,
    ReviewSession,
    RunRecord,
    Sighting,
    StateChange,
    Transition,
    WithdrawalRecord,
)
from pipeline.catalog.schema import OUTPUT_AREAS
from pipeline.catalog.states import (
    ALLOWED,
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

__all__ = [
    "ALLOWED",
    "DECISION_MOVES",
    "DEFAULT_FILENAME",
    "OUTPUT_AREAS",
    "REASON_CODES",
    "AccessRefused",
    "BoxSource",
    "Catalog",
    "CatalogError",
    "Decision",
    "DecisionRecord",
    "IllegalTransition",
    "InputKind",
    "ItemRecord",
    "ItemState",
    "ItemTransition",
    "OriginalValues",
    "OutputRecord",
    "PhiView",
    "PhiViewRecord",
    "PullAttempt",
    "PullOutcome",
    "PushAttempt",
    "PushOutcome",
    "Receipt",
    "RedactionBox",
    "ReleaseEntry",
    "ReleaseFile",
    "ReleaseRecord",
    "ReviewItem",
    "ReviewProgress",
    "ReviewReason",
    "ReviewSession",
    "RunRecord",
    "RunStatus",
    "Sighting",
    "StateChange",
    "Transition",
    "UnknownItem",
    "WithdrawalRecord",
    "default_url",
    "sqlite_url",
]
