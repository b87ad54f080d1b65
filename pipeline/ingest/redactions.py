"""A reviewer's redaction, carried out: the input is processed again with its boxes blanked.

A REDACT decision quarantines the input (reason ``redact``,
:data:`pipeline.catalog.DECISION_MOVES`).  The next run's DICOM stage brings
each such input back as ``NEW`` (:func:`requeue_redacted`) and processes it
with the boxes in force blanked on top of the pixel rules
(:func:`boxes_for`: the step gets them per input, as data); its staged
output is replaced and its output record with it, and it goes back to the
queue with :attr:`ReviewReason.REDACTED <pipeline.catalog.states.ReviewReason>`
for a person to check the redaction.  Approved, it is published by the next
run; rejected, never.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from pipeline.catalog import Catalog, RedactionBox, StateChange
from pipeline.catalog.states import Decision, InputKind, ItemState
from pipeline.pixels.blank import ManualBox
from pipeline.pixels.regions import Rect


def requeue_redacted(catalog: Catalog, run_id: int, kinds: Collection[InputKind]) -> set[str]:
    """Move inputs of ``kinds`` quarantined by a redaction not yet carried out back to ``NEW``.

    Only inputs whose latest transition is the redact decision itself (state
    QUARANTINED, reason ``redact``) and whose latest decision is still REDACT:
    one re-processed since is in another state or quarantined for another
    reason, and is not taken again.  Returns the sha256s moved.
    """
    awaiting = catalog.awaiting_redaction()
    if not awaiting:
        return set()
    moving = sorted(
        item.sha256
        for item in catalog.items([ItemState.QUARANTINED])
        if item.kind in kinds and item.reason == Decision.REDACT.value and item.sha256 in awaiting
    )
    catalog.transition(
        [StateChange(sha, ItemState.NEW, Decision.REDACT.value) for sha in moving], run_id
    )
    return set(moving)


def manual_box(box: RedactionBox) -> ManualBox:
    """The catalog's box as the pixel layer blanks it."""
    return ManualBox(box.frame, Rect(box.x, box.y, box.width, box.height))


def boxes_for(catalog: Catalog, sha256s: Iterable[str]) -> dict[str, tuple[ManualBox, ...]]:
    """The boxes in force for each of these inputs that has any (:meth:`Catalog.redactions`)."""
    return {
        sha: tuple(manual_box(box) for box in boxes)
        for sha, boxes in catalog.redactions(sha256s).items()
    }
