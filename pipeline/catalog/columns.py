"""The columns each record is read from, in its fields' order: one place for every query.

The catalog's reads are spread over :mod:`~pipeline.catalog.catalog` and
its mixins (:mod:`~pipeline.catalog.audit`, :mod:`~pipeline.catalog.reviewing`);
a record built positionally from a row must get its columns in one order
everywhere, so that order is written here once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pipeline.catalog.records import Receipt, ReviewItem
from pipeline.catalog.schema import DecisionRow, ItemRow, ReceivedRow, ReviewRow, TransitionRow
from pipeline.catalog.states import ReviewReason

#: An ItemRecord's fields.
ITEM_COLUMNS = (ItemRow.sha256, ItemRow.kind, ItemRow.size, ItemRow.state, ItemRow.reason)
#: A Transition's fields.
TRANSITION_COLUMNS = (
    TransitionRow.from_state,
    TransitionRow.to_state,
    TransitionRow.reason,
    TransitionRow.run_id,
    TransitionRow.at,
)
#: A DecisionRecord's fields before its boxes.
DECISION_COLUMNS = (
    DecisionRow.queue_id,
    DecisionRow.sha256,
    DecisionRow.decision,
    DecisionRow.reviewer,
    DecisionRow.reason,
    DecisionRow.ruleset_version,
    DecisionRow.decided_at,
    DecisionRow.decision_id,
)
#: A Receipt's fields (named alike in the table).
RECEIPT_COLUMNS = tuple(getattr(ReceivedRow, name) for name in Receipt.__dataclass_fields__)
#: A queue entry's own columns (its reasons come from review_reasons).
ENTRY_COLUMNS = (ReviewRow.queue_id, ReviewRow.sha256, ReviewRow.queued_at, ReviewRow.run_id)

_ORDER = list(ReviewReason)


def review_items(
    entries: Sequence[Any], reasons: Iterable[tuple[int, ReviewReason]]
) -> list[ReviewItem]:
    """Queue entries (rows of :data:`ENTRY_COLUMNS`) with their reasons in the enum's order."""
    by_entry: dict[int, list[ReviewReason]] = {}
    for queue_id, reason in reasons:
        by_entry.setdefault(queue_id, []).append(reason)
    return [
        ReviewItem(
            row.queue_id,
            row.sha256,
            tuple(sorted(by_entry.get(row.queue_id, []), key=_ORDER.index)),
            row.queued_at,
            row.run_id,
        )
        for row in entries
    ]
