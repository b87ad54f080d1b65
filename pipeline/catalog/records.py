"""What the catalog takes and gives back: small frozen records, no database types.

Callers (the runner, the flows, the review interface) pass these around and
never see a SQLAlchemy row.  An input is always named by its content sha256;
a path appears only in :class:`Sighting`'s key, as bytes.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.catalog.errors import CatalogError, short
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
class RedactionBox:
    """A rectangle a REDACT decision blanks, in pixels of the stored image.

    ``frame`` is the 0-based frame it is on, or None for every frame (a
    burned-in banner is usually on all of them).  ``x``/``y`` are the top
    left corner (column, row); the box covers ``width`` columns and
    ``height`` rows from there.  A box beyond the image's edge is clipped
    when it is applied (the catalog does not know the image's size).
    """

    frame: int | None
    x: int
    y: int
    width: int
    height: int
    source: BoxSource

    def __post_init__(self) -> None:
        numbers = {"x": self.x, "y": self.y, "width": self.width, "height": self.height}
        if self.frame is not None:
            numbers["frame"] = self.frame
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, int):
                raise CatalogError(f"a redaction box's {name} must be a whole number of pixels")
        if min(self.x, self.y) < 0 or (self.frame is not None and self.frame < 0):
            raise CatalogError(
                "a redaction box's x, y and frame must not be negative (0 is the first "
                "column, row and frame)"
            )
        if self.width <= 0 or self.height <= 0:
            raise CatalogError("a redaction box needs a width and a height of at least 1 pixel")
        if not isinstance(self.source, BoxSource):
            raise CatalogError(
                "a redaction box's source must be a BoxSource (ocr, region or drawn)"
            )


@dataclass(frozen=True)
class DecisionRecord:
    """A reviewer's decision; the latest one for an input is the one in force.

    ``boxes`` are what a REDACT decision blanks (empty for the others).
    """

    queue_id: int
    sha256: str
    decision: Decision
    reviewer: str
    reason: str
    ruleset_version: str
    decided_at: dt.datetime
    decision_id: int = 0
    boxes: tuple[RedactionBox, ...] = ()


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


@dataclass(frozen=True)
class ItemTransition:
    """One entry of the whole catalog's history: which input, and its transition."""

    sha256: str
    transition: Transition


@dataclass(frozen=True)
class ReleaseEntry:
    """A recorded release without its file list: what the audit report shows of it."""

    version: str
    created_at: dt.datetime
    run_id: int
    changelog: Mapping[str, object]
    files: int


@dataclass(frozen=True)
class WithdrawalRecord:
    """A recorded withdrawal (``subject`` is a pseudonym; the report only counts these)."""

    subject: str
    run_id: int
    at: dt.datetime


@dataclass(frozen=True)
class OriginalValues:
    """The original identifiers one link row keeps (PHI: compare with them, never show them).

    ``repr`` shows nothing of them, so a record that reaches a log or a
    traceback names no one.
    """

    patient_id: str
    issuer: str
    patient_name: str
    uids: tuple[str, ...]

    def __repr__(self) -> str:
        return "OriginalValues(<phi>)"

    __str__ = __repr__


@dataclass(frozen=True)
class ReviewSession:
    """An open session of the review app (its cookie's secret is never kept, only its hash).

    ``csrf_token`` goes into every form the session is shown and must come
    back with every state-changing request.
    """

    session_id: int
    reviewer: str
    created_at: dt.datetime
    last_seen_at: dt.datetime
    csrf_token: str = field(repr=False)


@dataclass(frozen=True)
class PhiViewRecord:
    """One entry of the PHI access log: who was shown what of which input, and when."""

    view_id: int
    session_id: int
    reviewer: str
    sha256: str
    what: PhiView
    at: dt.datetime


@dataclass(frozen=True)
class ReviewProgress:
    """How far the review queue is: entries with a decision, of all entries ever queued."""

    decided: int
    total: int
