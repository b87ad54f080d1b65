"""What the catalog takes and gives back: small frozen records, no database types.

Callers (the runner, the flows, the review interface) pass these around and
never see a SQLAlchemy row.  An input is always named by its content sha256;
a path appears only in :class:`Sighting`'s key, as bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline.catalog.errors import CatalogError, short
from pipeline.catalog.states import (
    Decision,
    InputKind,
    ItemState,
    PullOutcome,
    PushOutcome,
    ReviewReason,
    RunStatus,
)
from pipeline.reasons import Reason

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: The codes a transition's reason may be: stable, and never PHI.
REASON_CODES = frozenset(
    member.value for kind in (Reason, ReviewReason, Decision) for member in kind
)


def check_sha256(value: str, what: str = "a content hash") -> str:
    """``value`` if it is 64 lower-case hex digits; CatalogError (not echoing it) if not."""
    if not isinstance(value, str) or _SHA256.fullmatch(value) is None:
        raise CatalogError(
            f"{what} must be a sha256 (64 lower-case hex digits); something else was given "
            "(a path or an identifier never goes into the catalog's keys)"
        )
    return value


@dataclass(frozen=True)
class Sighting:
    """What discovery saw at a path: enough to skip hashing an unchanged file."""

    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class StateChange:
    """Move one input to ``to``, for ``reason``.

    ``reason`` is a stable code: the value of a :class:`~pipeline.reasons.Reason`,
    a :class:`ReviewReason` or a :class:`Decision` (``Reason.STALLED.value``).
    Free text is refused, so nothing particular to one input (PHI) can enter
    the history.
    """

    sha256: str
    to: ItemState
    reason: str | None = None

    def __post_init__(self) -> None:
        check_sha256(self.sha256)
        if self.reason is not None and self.reason not in REASON_CODES:
            raise CatalogError(
                f"the reason for moving input {short(self.sha256)} to {self.to.value} is not "
                "a stable code (a Reason, ReviewReason or Decision value): free text never "
                "goes into the history"
            )


@dataclass(frozen=True)
class Transition:
    """One entry of an input's history; ``run_id`` is None for a reviewer's decision."""

    from_state: ItemState | None
    to_state: ItemState
    reason: str | None
    run_id: int | None
    at: dt.datetime


@dataclass(frozen=True)
class ItemRecord:
    """An input and where it stands; ``reason`` is that of its latest transition."""

    sha256: str
    kind: InputKind
    size: int
    state: ItemState
    reason: str | None


@dataclass(frozen=True)
class OutputRecord:
    """A file an input produced in the staging area, and what produced it.

    ``area`` is ``"dicom"``, ``"raw"`` or ``"fastmri"``
    (:data:`pipeline.catalog.schema.OUTPUT_AREAS`); ``relpath`` is the
    release path (keyed tokens, no PHI).
    """

    input_sha256: str
    area: str
    relpath: str
    sha256: str
    size: int
    subject: str
    ruleset_version: str
    key_fingerprint: str
    run_id: int


@dataclass(frozen=True)
class ReviewItem:
    """A pending entry of the review queue."""

    queue_id: int
    sha256: str
    reasons: tuple[ReviewReason, ...]
    queued_at: dt.datetime
    run_id: int


@dataclass(frozen=True)
class DecisionRecord:
    """A reviewer's decision; the latest one for an input is the one in force."""

    queue_id: int
    sha256: str
    decision: Decision
    reviewer: str
    reason: str
    ruleset_version: str
    decided_at: dt.datetime


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: where, which bytes, from which input, whose."""

    relpath: str
    sha256: str
    size: int
    input_sha256: str
    subject: str


@dataclass(frozen=True)
class ReleaseRecord:
    """A recorded release; ``files`` in the order of their paths."""

    version: str
    created_at: dt.datetime
    run_id: int
    changelog: Mapping[str, object]
    files: tuple[ReleaseFile, ...]


@dataclass(frozen=True)
class RunRecord:
    """One run as the catalog keeps it."""

    run_id: int
    command: str
    ruleset_version: str
    key_fingerprint: str
    status: RunStatus
    started_at: dt.datetime
    finished_at: dt.datetime | None
    summary: Mapping[str, object] | None


@dataclass(frozen=True)
class Receipt:
    """An instance the DICOM listener stored: which, where from, when (PHI: the UIDs)."""

    sop_instance_uid: str
    sha256: str
    size: int
    sop_class_uid: str
    transfer_syntax: str
    calling_ae: str
    peer_address: str
    received_at: dt.datetime


@dataclass(frozen=True)
class PullAttempt:
    """One cohort row asked of a node: studies and instances found, how many arrived.

    ``query_sha256`` is the row's :attr:`~pipeline.net.cohort.CohortRow.key`
    (the hash of what it asks for: the catalog keeps no accession number).
    ``status`` is the last C-MOVE/C-GET status, None when nothing was retrieved.
    """

    node: str
    query_sha256: str
    outcome: PullOutcome
    studies: int
    instances: int
    retrieved: int
    status: int | None
    at: dt.datetime


@dataclass(frozen=True)
class PushAttempt:
    """One file of a release sent (or not) to a node, and the DIMSE status it got."""

    node: str
    version: str
    relpath: str
    sha256: str
    outcome: PushOutcome
    status: int | None
    at: dt.datetime
