"""The catalog's vocabulary: states of an input, kinds, review reasons, decisions, runs.

Every value is a stable code: it is what the database keeps (as text, so a
person reading a table with ``sqlite3`` or ``psql`` reads the same words),
what the review interface and later tools match on, and it never changes
once released (add a member instead, with a migration that widens the
column's CHECK constraint).

The allowed transitions are data (:data:`ALLOWED`), not code spread over
callers: the catalog validates every change against this one table, and the
tests walk every edge of it.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from types import MappingProxyType


class ItemState(enum.Enum):
    """Where one input (known by its content sha256) stands in the pipeline."""

    NEW = "new"  # discovered, not yet processed
    PROCESSED = "processed"  # its candidate outputs exist in the staging area
    NEEDS_REVIEW = "needs-review"  # a person must look before it may be released
    VERIFIED = "verified"  # passed the leak check (and review where it had one)
    RELEASED = "released"  # its outputs are in a published release
    QUARANTINED = "quarantined"  # refused, with a reason; kept privately
    WITHDRAWN = "withdrawn"  # consent revoked: never released again

    def __str__(self) -> str:
        return self.value


class InputKind(enum.Enum):
    """What discovery classified an input as."""

    DICOM = "dicom"
    TWIX = "twix"
    ISMRMRD = "ismrmrd"
    DICOMDIR = "dicomdir"
    OTHER = "other"

    def __str__(self) -> str:
        return self.value


class ReviewReason(enum.Enum):
    """Why an input waits in the review queue (one entry may have several)."""

    PIXEL_FINDINGS = "pixel-findings"
    LEAK_CHECK = "leak-check"
    UNKNOWN_PRIVATE_CREATOR = "unknown-private-creator"
    CLEANING_DOUBT = "cleaning-doubt"
    SPOT_CHECK = "spot-check"
    REDACTED = "redacted"  # back in the queue after a redaction: a person checks it
    DEFACE_FAILED = "deface-failed"  # a head volume whose face could not be removed with trust
    HEAD_KSPACE = "head-kspace"  # raw k-space of a head scan, held by rules/deface (not defaceable)

    def __str__(self) -> str:
        return self.value


class Decision(enum.Enum):
    """What a reviewer decided about one queued input."""

    APPROVE = "approve"
    REJECT = "reject"
    REDACT = "redact"  # release after a redaction: re-processed with it first

    def __str__(self) -> str:
        return self.value


class PhiView(enum.Enum):
    """What a reviewer was shown of an input's PHI (the review app's access log)."""

    IMAGE = "image"  # a frame of the original or the cleaned image
    ORIGINAL_HEADER = "original-header"  # the header's values before de-identification

    def __str__(self) -> str:
        return self.value


class BoxSource(enum.Enum):
    """Where a box a REDACT decision blanks came from."""

    OCR = "ocr"  # a box the pixel scan found and the reviewer accepted
    REGION = "region"  # a region rule's box
    DRAWN = "drawn"  # drawn by the reviewer

    def __str__(self) -> str:
        return self.value


class RunStatus(enum.Enum):
    """How a run of the pipeline ended (or that it has not yet)."""

    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CRASHED = "crashed"  # found RUNNING by a later start: killed, or the machine stopped

    def __str__(self) -> str:
        return self.value


_LIVE = frozenset(ItemState) - {ItemState.WITHDRAWN}
_ALWAYS = frozenset({ItemState.QUARANTINED, ItemState.WITHDRAWN})
_ONWARD: dict[ItemState | None, frozenset[ItemState]] = {
    None: frozenset({ItemState.NEW}),
    ItemState.NEW: frozenset({ItemState.PROCESSED}),
    ItemState.PROCESSED: frozenset({ItemState.NEEDS_REVIEW, ItemState.VERIFIED}),
    ItemState.NEEDS_REVIEW: frozenset({ItemState.VERIFIED}),
    ItemState.VERIFIED: frozenset({ItemState.RELEASED}),
    ItemState.RELEASED: frozenset({ItemState.PROCESSED}),
    ItemState.QUARANTINED: frozenset({ItemState.NEW}),
    ItemState.WITHDRAWN: frozenset(),
}

#: The states each state may move to; ``None`` is "not yet in the catalog".
#: Besides the way forward, quarantine is reachable from every state but
#: WITHDRAWN (a later step or a reviewer may refuse an input at any point,
#: and a quarantined input may be refused again for another reason), and
#: withdrawal from every state but itself: it is final.  A quarantined input
#: comes back only as NEW (re-processed after a rule change or a redaction),
#: a released one only as PROCESSED (re-processed with new rules, to be
#: verified again).
ALLOWED: Mapping[ItemState | None, frozenset[ItemState]] = MappingProxyType(
    {
        state: onward | (_ALWAYS if state in _LIVE else frozenset())
        for state, onward in _ONWARD.items()
    }
)


def allowed(from_state: ItemState | None, to_state: ItemState) -> bool:
    """Whether an input in ``from_state`` may move to ``to_state``."""
    return to_state in ALLOWED[from_state]


class PullOutcome(enum.Enum):
    """How one cohort row of a pull from a node ended."""

    RETRIEVED = "retrieved"  # every instance of every matching study is in received
    MISSING = "missing"  # the node has no study that matches: asked again next time
    FAILED = "failed"  # found, but not every instance arrived: retrieved again next time

    def __str__(self) -> str:
        return self.value


class PushOutcome(enum.Enum):
    """How one file of a push to a node ended (the DIMSE status is kept beside it)."""

    SENT = "sent"  # the node answered success (or a warning: it kept the instance)
    FAILED = "failed"  # a failure status, no answer, or no accepted context: sent again next time

    def __str__(self) -> str:
        return self.value
