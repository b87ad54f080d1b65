"""The catalog read whole, for the audit report: every run, transition, queue entry, decision.

The other reads of :class:`~pipeline.catalog.Catalog` answer a stage's
question about some inputs; these give the report everything at once, in
the order it was recorded, as the same frozen records.  They are a mixin of
the catalog so that the report reads through one object and one
transaction discipline.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, func, select

from pipeline.catalog.columns import (
    DECISION_COLUMNS,
    ENTRY_COLUMNS,
    TRANSITION_COLUMNS,
    review_items,
)
from pipeline.catalog.records import (
    DecisionRecord,
    ItemTransition,
    OriginalValues,
    ReleaseEntry,
    ReviewItem,
    RunRecord,
    Transition,
    WithdrawalRecord,
)
from pipeline.catalog.schema import (
    DecisionRow,
    LinkRow,
    ReleaseFileRow,
    ReleaseRow,
    ReviewReasonRow,
    ReviewRow,
    RunRow,
    TransitionRow,
    WithdrawalRow,
)
from pipeline.phi import Phi


class AuditReads:
    """Whole-catalog reads (mixed into :class:`~pipeline.catalog.Catalog`)."""

    def _read(self) -> contextlib.AbstractContextManager[Connection]:
        raise NotImplementedError  # the catalog's own read transaction

    def runs(self) -> list[RunRecord]:
        """Every run, oldest first."""
        with self._read() as connection:
            rows = connection.execute(
                select(
                    RunRow.run_id,
                    RunRow.command,
                    RunRow.ruleset_version,
                    RunRow.key_fingerprint,
                    RunRow.status,
                    RunRow.started_at,
                    RunRow.finished_at,
                    RunRow.summary,
                ).order_by(RunRow.run_id)
            )
            return [RunRecord(*row) for row in rows]

    def every_transition(self) -> list[ItemTransition]:
        """Every transition of every input, in the order recorded."""
        with self._read() as connection:
            rows = connection.execute(
                select(TransitionRow.sha256, *TRANSITION_COLUMNS).order_by(
                    TransitionRow.transition_id
                )
            )
            return [ItemTransition(row[0], Transition(*row[1:])) for row in rows]

    def review_entries(self) -> list[ReviewItem]:
        """Every queue entry, decided or not, oldest first."""
        with self._read() as connection:
            entries = connection.execute(select(*ENTRY_COLUMNS).order_by(ReviewRow.queue_id)).all()
            reasons = connection.execute(
                select(ReviewReasonRow.queue_id, ReviewReasonRow.reason)
            ).all()
        return review_items(entries, reasons)

    def every_decision(self) -> list[DecisionRecord]:
        """Every decision on every queue entry, oldest first."""
        with self._read() as connection:
            rows = connection.execute(select(*DECISION_COLUMNS).order_by(DecisionRow.decision_id))
            return [DecisionRecord(*row) for row in rows]

    def releases(self) -> list[ReleaseEntry]:
        """Every recorded release with its number of files, oldest first."""
        counts = (
            select(ReleaseFileRow.release_id, func.count().label("files"))
            .group_by(ReleaseFileRow.release_id)
            .subquery()
        )
        with self._read() as connection:
            rows = connection.execute(
                select(
                    ReleaseRow.version,
                    ReleaseRow.created_at,
                    ReleaseRow.run_id,
                    ReleaseRow.changelog,
                    func.coalesce(counts.c.files, 0),
                )
                .outerjoin(counts, counts.c.release_id == ReleaseRow.release_id)
                .order_by(ReleaseRow.release_id)
            )
            return [ReleaseEntry(*row) for row in rows]

    def withdrawals(self) -> list[WithdrawalRecord]:
        """Every recorded withdrawal, oldest first."""
        with self._read() as connection:
            rows = connection.execute(
                select(WithdrawalRow.subject, WithdrawalRow.run_id, WithdrawalRow.at).order_by(
                    WithdrawalRow.withdrawal_id
                )
            )
            return [WithdrawalRecord(*row) for row in rows]

    def original_values(self) -> Phi[tuple[OriginalValues, ...]]:
        """The original identifiers of every link row (PHI), for the report's own leak check."""
        with self._read() as connection:
            rows = connection.execute(
                select(
                    LinkRow.patient_id,
                    LinkRow.issuer,
                    LinkRow.patient_name,
                    LinkRow.study_uid,
                    LinkRow.series_uid,
                    LinkRow.sop_uid,
                    LinkRow.frame_of_reference_uid,
                ).distinct()
            ).all()
        return Phi(tuple(_originals(rows)))


def _originals(rows: Sequence[Sequence[str | None]]) -> Iterator[OriginalValues]:
    for patient_id, issuer, name, *uids in rows:
        yield OriginalValues(
            patient_id or "", issuer or "", name or "", tuple(u for u in uids if u)
        )
