"""The catalog: every input by content hash, its state and history, what it produced.

One :class:`Catalog` over one database (:mod:`pipeline.catalog.engine`):
runs; discovery's cache of where a content hash was seen; items and their
transitions; the outputs each processed input left in the staging area; the
review queue and the decisions on it; releases; the link table absorbed from
``links.sqlite``; withdrawals.  It holds PHI (paths, link rows, reviewers'
words) and so lives in the private location only.

Every method is one transaction: a batch is recorded whole or not at all.
Batches are written with one statement per table (executemany, which
SQLAlchemy sends as multi-row INSERTs), so recording 2,000 inputs costs a
few statements, not 2,000 round trips.  A write that validates what it reads
(a transition from the recorded state) holds the write lock from its first
read (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR UPDATE`` on
PostgreSQL), so two processes cannot both apply a change from one state.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    delete,
    exists,
    func,
    insert,
    select,
    union,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite

import pipeline.catalog.migrate as migrate
from pipeline.catalog.audit import AuditReads
from pipeline.catalog.columns import (
    DECISION_COLUMNS,
    ENTRY_COLUMNS,
    ITEM_COLUMNS,
    RECEIPT_COLUMNS,
    TRANSITION_COLUMNS,
    review_items,
)
from pipeline.catalog.engine import WRITE, create_catalog_engine, describe, storage_errors
from pipeline.catalog.errors import CatalogError, IllegalTransition, UnknownItem, short
from pipeline.catalog.links import read_links
from pipeline.catalog.records import (
    DecisionRecord,
    ItemRecord,
    OutputRecord,
    PullAttempt,
    PushAttempt,
    Receipt,
    RedactionBox,
    ReleaseFile,
    ReleaseRecord,
    ReviewItem,
    RunRecord,
    Sighting,
    StateChange,
    Transition,
    check_sha256,
)
from pipeline.catalog.reviewing import ReviewAccess
from pipeline.catalog.schema import (
    OUTPUT_AREAS,
    DecisionRow,
    ItemRow,
    LinkRow,
    OutputRow,
    PullAttemptRow,
    PushAttemptRow,
    ReceivedRow,
    RedactionBoxRow,
    ReleaseFileRow,
    ReleaseRow,
    ReviewReasonRow,
    ReviewRow,
    RunRow,
    SightingRow,
    TransitionRow,
    WithdrawalRow,
)
from pipeline.catalog.states import (
    ALLOWED,
    BoxSource,
    Decision,
    InputKind,
    ItemState,
    PullOutcome,
    PushOutcome,
    ReviewReason,
    RunStatus,
)

T = TypeVar("T")
# Values per IN (...) list: far below SQLite's (32,766) and PostgreSQL's (65,535)
# bound-parameter limits, whatever the size of the caller's batch.
_CHUNK = 500
_ENDED = frozenset(RunStatus) - {RunStatus.RUNNING}
_LIVE = [state for state in ItemState if state is not ItemState.WITHDRAWN]

#: What a reviewer's decision does to the input's state, by the state it is in.
#: APPROVE verifies an input waiting for review, and sends one an earlier
#: decision quarantined back to be processed again (the approval then stands
#: for it: :meth:`Catalog.approved`); REJECT and REDACT quarantine it.  In a
#: state not listed the decision is recorded and the state left as it is.
DECISION_MOVES: Mapping[Decision, Mapping[ItemState, ItemState]] = {
    Decision.APPROVE: {
        ItemState.NEEDS_REVIEW: ItemState.VERIFIED,
        ItemState.QUARANTINED: ItemState.NEW,
    },
    Decision.REJECT: dict.fromkeys(_LIVE, ItemState.QUARANTINED),
    Decision.REDACT: dict.fromkeys(_LIVE, ItemState.QUARANTINED),
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _chunks(values: Sequence[T]) -> Iterator[Sequence[T]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start : start + _CHUNK]


def _json(value: Mapping[str, object], what: str) -> dict[str, Any]:
    """A plain JSON copy of ``value`` (what the database will give back), or CatalogError."""
    try:
        copy: dict[str, Any] = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as exc:
        raise CatalogError(f"{what} must be JSON: {exc}") from None
    return copy


class Catalog(AuditReads, ReviewAccess):
    """The catalog of one workspace (open with :meth:`open`).

    The audit report's whole-catalog reads are methods of
    :class:`~pipeline.catalog.audit.AuditReads`, the review app's tokens,
    sessions and PHI access log of :class:`~pipeline.catalog.reviewing.ReviewAccess`:
    bases of this class.
    """

    def __init__(self, engine: Engine, folder: Path | None) -> None:
        self._engine = engine
        self._folder = folder  # the SQLite file's folder, for StorageError

    @classmethod
    def open(cls, url: str) -> Catalog:
        """Open the catalog at ``url``, creating it or upgrading it to the newest schema.

        Parameters
        ----------
        url : str
            ``sqlite:///PATH`` (the file is created with mode 0600; its folder
            must exist: see :func:`pipeline.catalog.engine.default_url`) or any
            ``postgresql://`` URL.

        Raises
        ------
        CatalogError
            The URL is not usable, or a newer mricurate upgraded the catalog.
        StorageError
            The SQLite file's location cannot be written (full, read-only).
        """
        engine, folder = create_catalog_engine(url)
        try:
            with storage_errors(folder):
                migrate.upgrade(engine)
        except sa_exc.DBAPIError as exc:
            engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise CatalogError(
                f"cannot open the catalog {describe(engine.url)}: {reason}; check the catalog "
                "URL (a SQLite file of mricurate's, a PostgreSQL server that is running)"
            ) from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, folder)

    def close(self) -> None:
        """Close the pooled connections (a later call opens new ones)."""
        self._engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Catalog({describe(self._engine.url)})"

    @property
    def schema_revision(self) -> str:
        """The Alembic revision the database is at."""
        with self._read() as connection:
            return migrate.current(connection) or ""

    @contextlib.contextmanager
    def _write(self) -> Iterator[Connection]:
        with storage_errors(self._folder), self._engine.connect() as connection:
            connection.execution_options(**{WRITE: True})
            with connection.begin():
                yield connection

    @contextlib.contextmanager
    def _read(self) -> Iterator[Connection]:
        with (
            storage_errors(self._folder),
            self._engine.connect() as connection,
            connection.begin(),
        ):
            yield connection

    # -- runs ---------------------------------------------------------------------------

    def start_run(self, command: str, *, ruleset_version: str, key_fingerprint: str) -> int:
        """Record a run's start (RUNNING); return its id."""
        with self._write() as connection:
            return connection.execute(
                insert(RunRow)
                .values(
                    command=command,
                    ruleset_version=ruleset_version,
                    key_fingerprint=key_fingerprint,
                    status=RunStatus.RUNNING,
                    started_at=_now(),
                )
                .returning(RunRow.run_id)
            ).scalar_one()

    def finish_run(self, run_id: int, status: RunStatus, summary: Mapping[str, object]) -> None:
        """Record how a run ended, with its summary (JSON, no PHI); a run ends once."""
        if status not in _ENDED:
            raise CatalogError(f"run {run_id} can end completed, failed or crashed, not running")
        document = _json(summary, f"the summary of run {run_id}")
        with self._write() as connection:
            found = connection.execute(
                select(RunRow.status).where(RunRow.run_id == run_id).with_for_update()
            ).scalar_one_or_none()
            if found is None:
                raise CatalogError(f"there is no run {run_id} in the catalog: start it first")
            if found is not RunStatus.RUNNING:
                raise CatalogError(f"run {run_id} has already ended ({found.value})")
            connection.execute(
                update(RunRow)
                .where(RunRow.run_id == run_id)
                .values(status=status, finished_at=_now(), summary=document)
            )

    def mark_unfinished_runs_crashed(self) -> list[int]:
        """Mark every RUNNING run CRASHED and return their ids.

        Call it at the start of a run that holds the workspace lock: a run
        still RUNNING then was killed (``kill -9``, a power cut) and will never
        finish itself.
        """
        with self._write() as connection:
            ids = list(
                connection.execute(
                    select(RunRow.run_id)
                    .where(RunRow.status == RunStatus.RUNNING)
                    .order_by(RunRow.run_id)
                    .with_for_update()
                ).scalars()
            )
            if ids:
                connection.execute(
                    update(RunRow)
                    .where(RunRow.run_id.in_(ids))
                    .values(status=RunStatus.CRASHED, finished_at=_now())
                )
            return ids

    def run(self, run_id: int) -> RunRecord:
        """One run as recorded."""
        with self._read() as connection:
            row = connection.execute(select(RunRow).where(RunRow.run_id == run_id)).one_or_none()
        if row is None:
            raise CatalogError(f"there is no run {run_id} in the catalog")
        return RunRecord(
            row.run_id,
            row.command,
            row.ruleset_version,
            row.key_fingerprint,
            row.status,
            row.started_at,
            row.finished_at,
            row.summary,
        )

    # -- discovery's cache --------------------------------------------------------------

    def sighting(self, path: bytes) -> Sighting | None:
        """What was last seen at ``path`` (the bytes the file system gives), if anything."""
        return self.sightings([path]).get(path)

    def sightings(self, paths: Iterable[bytes]) -> dict[bytes, Sighting]:
        """What was last seen at each of these paths that was seen before.

        Discovery asks for a whole folder at once: one query per 500 paths,
        not one per file.
        """
        digests = {_path_digest(path): bytes(path) for path in paths}
        found: dict[bytes, Sighting] = {}
        with self._read() as connection:
            for chunk in _chunks(list(digests)):
                for digest, size, mtime_ns, sha256 in connection.execute(
                    select(
                        SightingRow.path_digest,
                        SightingRow.size,
                        SightingRow.mtime_ns,
                        SightingRow.sha256,
                    ).where(SightingRow.path_digest.in_(chunk))
                ):
                    found[digests[digest]] = Sighting(size, mtime_ns, sha256)
        return found

    def paths_of(self, sha256: str) -> list[bytes]:
        """Every path this content was seen at, the latest sighting first (paths are PHI).

        What the review interface opens as "the original": the file may have
        left ``incoming/`` since (the caller checks).
        """
        check_sha256(sha256)
        with self._read() as connection:
            return [
                bytes(path)
                for path in connection.execute(
                    select(SightingRow.path)
                    .where(SightingRow.sha256 == sha256)
                    .order_by(SightingRow.seen_at.desc(), SightingRow.path_digest)
                ).scalars()
            ]

    def record_sightings(self, rows: Sequence[tuple[bytes, Sighting]]) -> None:
        """Record what discovery saw at each path (the last row for a path wins)."""
        now = _now()
        latest = {path: seen for path, seen in rows}
        values = [
            {
                "path_digest": _path_digest(path),
                "path": bytes(path),
                "size": seen.size,
                "mtime_ns": seen.mtime_ns,
                "sha256": check_sha256(seen.sha256),
                "seen_at": now,
            }
            for path, seen in latest.items()
        ]
        if not values:
            return
        with self._write() as connection:
            statement = _insert(connection, SightingRow)
            connection.execute(
                statement.on_conflict_do_update(
                    index_elements=[SightingRow.path_digest],
                    set_={
                        name: statement.excluded[name]
                        for name in ("path", "size", "mtime_ns", "sha256", "seen_at")
                    },
                ),
                values,
            )

    # -- items and their history --------------------------------------------------------

    def register(self, items: Sequence[tuple[str, InputKind, int]], run_id: int) -> set[str]:
        """Record inputs not yet known, in NEW; return the sha256s that were new.

        Each new input gets its first transition (none -> NEW).  An input
        already known is left as it is, whatever its state: the same content
        dropped again or renamed is the same input.
        """
        wanted: dict[str, tuple[InputKind, int]] = {}
        for sha256, kind, size in items:
            wanted.setdefault(check_sha256(sha256), (InputKind(kind), int(size)))
        if not wanted:
            return set()
        now = _now()
        with self._write() as connection:
            self._require_runs(connection, {run_id})
            statement = (
                _insert(connection, ItemRow)
                .on_conflict_do_nothing(index_elements=[ItemRow.sha256])
                .returning(ItemRow.sha256)
            )
            new = set(
                connection.execute(
                    statement,
                    [
                        {
                            "sha256": sha256,
                            "kind": kind,
                            "size": size,
                            "state": ItemState.NEW,
                            "reason": None,
                            "registered_run_id": run_id,
                            "updated_at": now,
                        }
                        for sha256, (kind, size) in wanted.items()
                    ],
                ).scalars()
            )
            if new:
                connection.execute(
                    insert(TransitionRow),
                    [
                        {
                            "sha256": sha256,
                            "from_state": None,
                            "to_state": ItemState.NEW,
                            "reason": None,
                            "run_id": run_id,
                            "at": now,
                        }
                        for sha256 in wanted
                        if sha256 in new
                    ],
                )
        return new

    def transition(self, changes: Sequence[StateChange], run_id: int) -> None:
        """Apply ``changes`` in order, all or none, each appended to its input's history.

        One input may change more than once in a batch (NEW -> PROCESSED ->
        VERIFIED); each step is checked against
        :data:`pipeline.catalog.states.ALLOWED` from the state before it.

        Raises
        ------
        UnknownItem
            An input was never registered.
        IllegalTransition
            A change the table does not allow (nothing of the batch is applied).
        """
        if not changes:
            return
        with self._write() as connection:
            self._require_runs(connection, {run_id})
            self._apply(connection, changes, run_id, _now())

    def _apply(
        self,
        connection: Connection,
        changes: Sequence[StateChange],
        run_id: int | None,
        now: dt.datetime,
    ) -> None:
        """Validate and record ``changes`` inside the caller's write transaction."""
        states = self._states(connection, [change.sha256 for change in changes], lock=True)
        latest: dict[str, StateChange] = {}
        history = []
        for change in changes:
            if change.sha256 not in states:
                raise UnknownItem(change.sha256)
            before = states[change.sha256]
            if change.to not in ALLOWED[before]:
                raise IllegalTransition(change.sha256, before, change.to)
            states[change.sha256] = change.to
            latest[change.sha256] = change
            history.append(
                {
                    "sha256": change.sha256,
                    "from_state": before,
                    "to_state": change.to,
                    "reason": change.reason,
                    "run_id": run_id,
                    "at": now,
                }
            )
        # One UPDATE per (state, reason) a batch moves inputs to: usually one.
        moved: dict[tuple[ItemState, str | None], list[str]] = {}
        for sha256, change in latest.items():
            moved.setdefault((change.to, change.reason), []).append(sha256)
        for (state, reason), sha256s in moved.items():
            for chunk in _chunks(sha256s):
                connection.execute(
                    update(ItemRow)
                    .where(ItemRow.sha256.in_(chunk))
                    .values(state=state, reason=reason, updated_at=now)
                )
        connection.execute(insert(TransitionRow), history)

    def _states(
        self, connection: Connection, sha256s: Iterable[str], *, lock: bool = False
    ) -> dict[str, ItemState]:
        """The recorded state of each of these inputs that is known.

        ``lock``: read ``FOR UPDATE`` (PostgreSQL; SQLite's write transaction
        already holds the database), in sha256 order, so two writers that
        lock overlapping batches take the rows in one order and never deadlock.
        """
        found: dict[str, ItemState] = {}
        for chunk in _chunks(sorted(set(sha256s))):
            query = select(ItemRow.sha256, ItemRow.state).where(ItemRow.sha256.in_(chunk))
            if lock:
                query = query.order_by(ItemRow.sha256).with_for_update()
            found.update((sha256, state) for sha256, state in connection.execute(query))
        return found

    def state_of(self, sha256: str) -> ItemState | None:
        """The input's state, or None if it was never registered."""
        with self._read() as connection:
            return self._states(connection, [sha256]).get(sha256)

    def history(self, sha256: str) -> list[Transition]:
        """Every transition of the input, oldest first (empty if it is unknown)."""
        with self._read() as connection:
            rows = connection.execute(
                select(
                    TransitionRow.from_state,
                    TransitionRow.to_state,
                    TransitionRow.reason,
                    TransitionRow.run_id,
                    TransitionRow.at,
                )
                .where(TransitionRow.sha256 == sha256)
                .order_by(TransitionRow.transition_id)
            )
            return [Transition(*row) for row in rows]

    def items(self, states: Iterable[ItemState] | None = None) -> list[ItemRecord]:
        """Every input (in these states, if given), by sha256."""
        query = select(
            ItemRow.sha256, ItemRow.kind, ItemRow.size, ItemRow.state, ItemRow.reason
        ).order_by(ItemRow.sha256)
        if states is not None:
            query = query.where(ItemRow.state.in_(list(states)))
        with self._read() as connection:
            return [ItemRecord(*row) for row in connection.execute(query)]

    def entered(self, state: ItemState) -> list[tuple[ItemRecord, Transition]]:
        """Every input now in ``state``, with the transition that put it there, by sha256."""
        latest = (
            select(func.max(TransitionRow.transition_id).label("transition_id"))
            .group_by(TransitionRow.sha256)
            .subquery()
        )
        query = (
            select(*ITEM_COLUMNS, *TRANSITION_COLUMNS)
            .join(TransitionRow, TransitionRow.sha256 == ItemRow.sha256)
            .join(latest, latest.c.transition_id == TransitionRow.transition_id)
            .where(ItemRow.state == state)
            .order_by(ItemRow.sha256)
        )
        with self._read() as connection:
            return [
                (ItemRecord(*list(row)[:5]), Transition(*list(row)[5:]))
                for row in connection.execute(query)
            ]

    # -- outputs ------------------------------------------------------------------------

    def record_outputs(self, outputs: Sequence[OutputRecord]) -> None:
        """Record what each input produced, replacing what was recorded for it before.

        Every input named in ``outputs`` ends with exactly the outputs given
        for it here (a re-processed input's old outputs go).

        Raises
        ------
        CatalogError
            An unknown area, two outputs at one path, or a path already
            recorded for another input (two inputs cannot make one file).
        """
        if not outputs:
            return
        seen: dict[tuple[str, str], str] = {}
        for output in outputs:
            check_sha256(output.input_sha256, "an output's input")
            check_sha256(output.sha256, "an output's content hash")
            if output.area not in OUTPUT_AREAS:
                raise CatalogError(
                    f"output {output.relpath} of input {short(output.input_sha256)}: the area "
                    f"must be one of {', '.join(OUTPUT_AREAS)}"
                )
            owner = seen.setdefault((output.area, output.relpath), output.input_sha256)
            if owner != output.input_sha256:
                raise CatalogError(
                    f"two inputs ({short(owner)} and {short(output.input_sha256)}) would make "
                    f"{output.area}/{output.relpath}"
                )
        inputs = list(dict.fromkeys(output.input_sha256 for output in outputs))
        with self._write() as connection:
            self._require_runs(connection, {output.run_id for output in outputs})
            unknown = set(inputs) - set(self._states(connection, inputs, lock=True))
            if unknown:
                raise UnknownItem(min(unknown))
            self._refuse_taken_paths(connection, seen)
            for chunk in _chunks(inputs):
                connection.execute(delete(OutputRow).where(OutputRow.input_sha256.in_(chunk)))
            connection.execute(
                insert(OutputRow),
                [
                    {
                        "input_sha256": o.input_sha256,
                        "area": o.area,
                        "relpath": o.relpath,
                        "sha256": o.sha256,
                        "size": o.size,
                        "subject": o.subject,
                        "ruleset_version": o.ruleset_version,
                        "key_fingerprint": o.key_fingerprint,
                        "run_id": o.run_id,
                    }
                    for o in {(o.area, o.relpath): o for o in outputs}.values()
                ],
            )

    def _refuse_taken_paths(
        self, connection: Connection, wanted: Mapping[tuple[str, str], str]
    ) -> None:
        relpaths = list(dict.fromkeys(relpath for _, relpath in wanted))
        for chunk in _chunks(relpaths):
            for area, relpath, owner in connection.execute(
                select(OutputRow.area, OutputRow.relpath, OutputRow.input_sha256).where(
                    OutputRow.relpath.in_(chunk)
                )
            ):
                mine = wanted.get((area, relpath))
                if mine is not None and mine != owner:
                    raise CatalogError(
                        f"{area}/{relpath} is recorded as an output of input {short(owner)}; "
                        f"input {short(mine)} cannot make it too (an output conflict: "
                        "quarantine one of them)"
                    )

    def outputs_of(self, sha256s: Iterable[str]) -> list[OutputRecord]:
        """The outputs recorded for these inputs, by input, area and path."""
        wanted = list(dict.fromkeys(sha256s))
        found: list[OutputRecord] = []
        with self._read() as connection:
            for chunk in _chunks(wanted):
                rows = connection.execute(
                    select(
                        OutputRow.input_sha256,
                        OutputRow.area,
                        OutputRow.relpath,
                        OutputRow.sha256,
                        OutputRow.size,
                        OutputRow.subject,
                        OutputRow.ruleset_version,
                        OutputRow.key_fingerprint,
                        OutputRow.run_id,
                    ).where(OutputRow.input_sha256.in_(chunk))
                )
                found.extend(OutputRecord(*row) for row in rows)
        return sorted(found, key=lambda o: (o.input_sha256, o.area, o.relpath))

    # -- the review queue ---------------------------------------------------------------

    def enqueue_review(self, sha256: str, reasons: Sequence[ReviewReason], run_id: int) -> int:
        """Put an input in the review queue; return its queue id.

        An input already waiting (an entry with no decision yet) keeps its
        entry, which gains any new reasons: a rerun does not queue it twice.
        The input's state is the caller's to change (to NEEDS_REVIEW).
        """
        check_sha256(sha256)
        wanted = list(dict.fromkeys(ReviewReason(reason) for reason in reasons))
        if not wanted:
            raise CatalogError(f"input {short(sha256)} needs a reason to be reviewed")
        now = _now()
        with self._write() as connection:
            self._require_runs(connection, {run_id})
            if not self._states(connection, [sha256], lock=True):
                raise UnknownItem(sha256)
            queue_id = connection.execute(
                select(ReviewRow.queue_id)
                .where(ReviewRow.sha256 == sha256, ~_decided(ReviewRow.queue_id))
                .order_by(ReviewRow.queue_id)
                .limit(1)
            ).scalar_one_or_none()
            if queue_id is None:
                queue_id = connection.execute(
                    insert(ReviewRow)
                    .values(sha256=sha256, run_id=run_id, queued_at=now)
                    .returning(ReviewRow.queue_id)
                ).scalar_one()
            connection.execute(
                _insert(connection, ReviewReasonRow).on_conflict_do_nothing(
                    index_elements=[ReviewReasonRow.queue_id, ReviewReasonRow.reason]
                ),
                [{"queue_id": queue_id, "reason": reason} for reason in wanted],
            )
            return queue_id

    def pending_reviews(self) -> list[ReviewItem]:
        """Queue entries with no decision yet, oldest first."""
        with self._read() as connection:
            entries = connection.execute(
                select(*ENTRY_COLUMNS)
                .where(~_decided(ReviewRow.queue_id))
                .order_by(ReviewRow.queue_id)
            ).all()
            reasons = connection.execute(
                select(ReviewReasonRow.queue_id, ReviewReasonRow.reason)
                .join(ReviewRow, ReviewRow.queue_id == ReviewReasonRow.queue_id)
                .where(~_decided(ReviewRow.queue_id))
            ).all()
        return review_items(entries, reasons)

    def review_entry(self, queue_id: int) -> ReviewItem:
        """One entry of the queue, decided or not, with its reasons."""
        with self._read() as connection:
            row = connection.execute(
                select(
                    ReviewRow.queue_id, ReviewRow.sha256, ReviewRow.queued_at, ReviewRow.run_id
                ).where(ReviewRow.queue_id == queue_id)
            ).one_or_none()
            if row is None:
                raise CatalogError(f"there is no review {queue_id} in the queue")
            found = set(
                connection.execute(
                    select(ReviewReasonRow.reason).where(ReviewReasonRow.queue_id == queue_id)
                ).scalars()
            )
        reasons = tuple(reason for reason in ReviewReason if reason in found)
        return ReviewItem(row.queue_id, row.sha256, reasons, row.queued_at, row.run_id)

    def decide(
        self,
        queue_id: int,
        decision: Decision,
        *,
        reviewer: str,
        reason: str,
        ruleset_version: str,
        boxes: Sequence[RedactionBox] = (),
    ) -> int:
        """Record a reviewer's decision on a queue entry, move the input; return the decision id.

        The decision is appended (a later one supersedes, both are kept) and
        the input's state follows :data:`DECISION_MOVES`, the transition's
        reason being the decision's code (the reviewer's words stay in the
        decision).  REJECT needs a reason; REDACT needs the boxes to blank
        (kept with the decision, in the order given: the next ingest run
        re-processes the input with them, :meth:`redaction_boxes`), and only
        REDACT takes boxes.
        """
        decision = Decision(decision)
        boxes = tuple(boxes)
        if not reviewer.strip():
            raise CatalogError(f"the decision on review {queue_id} needs the reviewer's name")
        if decision is Decision.REJECT and not reason.strip():
            raise CatalogError(f"rejecting review {queue_id} needs a reason")
        if decision is Decision.REDACT and not boxes:
            raise CatalogError(
                f"redacting review {queue_id} needs at least one box to blank: accept an OCR "
                "box or draw one (or approve or reject instead)"
            )
        if decision is not Decision.REDACT and boxes:
            raise CatalogError(
                f"the {decision.value} decision on review {queue_id} was given boxes: only a "
                "redact decision blanks boxes (decide redact, or leave the boxes out)"
            )
        for box in boxes:
            if not isinstance(box, RedactionBox):
                raise CatalogError(
                    f"the boxes of the decision on review {queue_id} must be RedactionBox records"
                )
        now = _now()
        with self._write() as connection:
            sha256 = connection.execute(
                select(ReviewRow.sha256).where(ReviewRow.queue_id == queue_id)
            ).scalar_one_or_none()
            if sha256 is None:
                raise CatalogError(f"there is no review {queue_id} in the queue")
            state = self._states(connection, [sha256], lock=True)[sha256]
            if decision is Decision.APPROVE and not self._has_output(connection, sha256):
                # An approval releases the output a person saw; without one the
                # item would be RELEASED with no file in any release.
                raise CatalogError(
                    f"review {queue_id}: the input was held back without an output (its "
                    "reason says why: a raw file whose subject is unknown, say), so there is "
                    "nothing to approve: reject it, or remove the cause and ingest it again"
                )
            decision_id: int = connection.execute(
                insert(DecisionRow)
                .values(
                    queue_id=queue_id,
                    sha256=sha256,
                    decision=decision,
                    reviewer=reviewer,
                    reason=reason,
                    ruleset_version=ruleset_version,
                    decided_at=now,
                )
                .returning(DecisionRow.decision_id)
            ).scalar_one()
            if boxes:
                connection.execute(
                    insert(RedactionBoxRow),
                    [
                        {
                            "decision_id": decision_id,
                            "box_index": index,
                            "frame": box.frame,
                            "x": box.x,
                            "y": box.y,
                            "width": box.width,
                            "height": box.height,
                            "source": box.source,
                        }
                        for index, box in enumerate(boxes)
                    ],
                )
            target = DECISION_MOVES[decision].get(state)
            if target is not None:
                self._apply(connection, [StateChange(sha256, target, decision.value)], None, now)
            return decision_id

    @staticmethod
    def _has_output(connection: Connection, sha256: str) -> bool:
        found = connection.execute(
            select(OutputRow.sha256).where(OutputRow.input_sha256 == sha256).limit(1)
        ).first()
        return found is not None

    def decisions(self, sha256: str) -> list[DecisionRecord]:
        """Every decision on the input, oldest first, each with its boxes."""
        with self._read() as connection:
            rows = connection.execute(
                select(*DECISION_COLUMNS)
                .where(DecisionRow.sha256 == sha256)
                .order_by(DecisionRow.decision_id)
            ).all()
            boxes = self._boxes(connection, [row.decision_id for row in rows])
        return [DecisionRecord(*row, boxes.get(row.decision_id, ())) for row in rows]

    @staticmethod
    def _boxes(
        connection: Connection, decision_ids: Sequence[int]
    ) -> dict[int, tuple[RedactionBox, ...]]:
        found: dict[int, list[RedactionBox]] = {}
        for chunk in _chunks(list(decision_ids)):
            for row in connection.execute(
                select(
                    RedactionBoxRow.decision_id,
                    RedactionBoxRow.frame,
                    RedactionBoxRow.x,
                    RedactionBoxRow.y,
                    RedactionBoxRow.width,
                    RedactionBoxRow.height,
                    RedactionBoxRow.source,
                )
                .where(RedactionBoxRow.decision_id.in_(chunk))
                .order_by(RedactionBoxRow.decision_id, RedactionBoxRow.box_index)
            ):
                found.setdefault(row.decision_id, []).append(
                    RedactionBox(row.frame, row.x, row.y, row.width, row.height,
                                 BoxSource(row.source))
                )  # fmt: skip
        return {decision_id: tuple(boxes) for decision_id, boxes in found.items()}

    def redaction_boxes(self, sha256: str) -> tuple[RedactionBox, ...]:
        """The boxes of the input's latest decision if that decision is REDACT, else ().

        What the next processing of the input blanks on top of the pixel
        rules: a later approval or rejection supersedes a redaction.
        """
        check_sha256(sha256)
        with self._read() as connection:
            latest = connection.execute(
                select(DecisionRow.decision_id, DecisionRow.decision)
                .where(DecisionRow.sha256 == sha256)
                .order_by(DecisionRow.decision_id.desc())
                .limit(1)
            ).one_or_none()
            if latest is None or latest.decision is not Decision.REDACT:
                return ()
            return self._boxes(connection, [latest.decision_id]).get(latest.decision_id, ())

    def redactions(self, sha256s: Iterable[str]) -> dict[str, tuple[RedactionBox, ...]]:
        """The boxes in force for each of these inputs that has any (processing blanks them).

        Each queue entry's latest decision stands for that entry; the boxes of
        every entry whose standing decision is REDACT are in force, oldest
        entry first.  So a redaction stays in force after the redacted file is
        approved on its next entry (a re-processing under new rules must blank
        the same text), a second redaction on that entry adds its boxes, and a
        decision revisited on the same entry (approve after all) withdraws
        them.
        """
        wanted = list(dict.fromkeys(sha256s))
        standing = (
            select(func.max(DecisionRow.decision_id).label("decision_id"))
            .group_by(DecisionRow.queue_id)
            .subquery()
        )
        found: dict[str, list[RedactionBox]] = {}
        with self._read() as connection:
            for chunk in _chunks(wanted):
                rows = connection.execute(
                    select(DecisionRow.sha256, DecisionRow.decision_id)
                    .join(standing, standing.c.decision_id == DecisionRow.decision_id)
                    .where(DecisionRow.sha256.in_(chunk), DecisionRow.decision == Decision.REDACT)
                    .order_by(DecisionRow.queue_id)
                ).all()
                boxes = self._boxes(connection, [row.decision_id for row in rows])
                for row in rows:
                    found.setdefault(row.sha256, []).extend(boxes.get(row.decision_id, ()))
        return {sha256: tuple(boxes) for sha256, boxes in found.items() if boxes}

    def awaiting_redaction(self) -> set[str]:
        """The inputs whose latest decision is REDACT: their redaction is not yet checked.

        The next processing of each blanks its boxes and sends it back to the
        queue (:attr:`~pipeline.catalog.states.ReviewReason.REDACTED`).
        """
        return self._latest_decision_is(Decision.REDACT)

    def approved(self) -> set[str]:
        """The inputs whose latest decision is APPROVE."""
        return self._latest_decision_is(Decision.APPROVE)

    def _latest_decision_is(self, decision: Decision) -> set[str]:
        latest = (
            select(func.max(DecisionRow.decision_id).label("decision_id"))
            .group_by(DecisionRow.sha256)
            .subquery()
        )
        with self._read() as connection:
            return set(
                connection.execute(
                    select(DecisionRow.sha256)
                    .join(latest, latest.c.decision_id == DecisionRow.decision_id)
                    .where(DecisionRow.decision == decision)
                ).scalars()
            )

    # -- releases -----------------------------------------------------------------------

    def record_release(
        self,
        version: str,
        run_id: int,
        files: Sequence[ReleaseFile],
        changelog: Mapping[str, object],
    ) -> None:
        """Record a published release; releases are immutable (a version is recorded once)."""
        if not version:
            raise CatalogError("a release needs a version")
        relpaths = [file.relpath for file in files]
        if len(set(relpaths)) != len(relpaths):
            raise CatalogError(f"release {version} lists a file path twice")
        for file in files:
            check_sha256(file.sha256, "a released file's content hash")
            check_sha256(file.input_sha256, "a released file's input")
        document = _json(changelog, f"the changelog of release {version}")
        with self._write() as connection:
            self._require_runs(connection, {run_id})
            taken = connection.execute(
                select(ReleaseRow.release_id).where(ReleaseRow.version == version)
            ).scalar_one_or_none()
            if taken is not None:
                raise CatalogError(
                    f"release {version} is already recorded: releases are immutable, "
                    "publish a new version"
                )
            release_id = connection.execute(
                insert(ReleaseRow)
                .values(version=version, run_id=run_id, created_at=_now(), changelog=document)
                .returning(ReleaseRow.release_id)
            ).scalar_one()
            if files:
                connection.execute(
                    insert(ReleaseFileRow),
                    [
                        {
                            "release_id": release_id,
                            "relpath": file.relpath,
                            "sha256": file.sha256,
                            "size": file.size,
                            "input_sha256": file.input_sha256,
                            "subject": file.subject,
                        }
                        for file in files
                    ],
                )

    def latest_release(self) -> ReleaseRecord | None:
        """The release recorded last, with its files, or None before the first."""
        with self._read() as connection:
            release = connection.execute(
                select(ReleaseRow).order_by(ReleaseRow.release_id.desc()).limit(1)
            ).one_or_none()
            if release is None:
                return None
            files = connection.execute(
                select(
                    ReleaseFileRow.relpath,
                    ReleaseFileRow.sha256,
                    ReleaseFileRow.size,
                    ReleaseFileRow.input_sha256,
                    ReleaseFileRow.subject,
                )
                .where(ReleaseFileRow.release_id == release.release_id)
                .order_by(ReleaseFileRow.relpath)
            )
            return ReleaseRecord(
                release.version,
                release.created_at,
                release.run_id,
                release.changelog,
                tuple(ReleaseFile(*file) for file in files),
            )

    # -- the DICOM network ----------------------------------------------------------------

    def received(self, sop_instance_uid: str) -> Receipt | None:
        """The first copy the listener stored of this SOP Instance UID, or None."""
        with self._read() as connection:
            row = connection.execute(
                select(*RECEIPT_COLUMNS).where(ReceivedRow.sop_instance_uid == sop_instance_uid)
            ).one_or_none()
        return None if row is None else Receipt(*row)

    def received_among(self, sop_instance_uids: Iterable[str]) -> set[str]:
        """Those of ``sop_instance_uids`` the listener (or a pull) has stored."""
        wanted = sorted(set(sop_instance_uids))
        found: set[str] = set()
        with self._read() as connection:
            for chunk in _chunks(wanted):
                found.update(
                    connection.execute(
                        select(ReceivedRow.sop_instance_uid).where(
                            ReceivedRow.sop_instance_uid.in_(chunk)
                        )
                    ).scalars()
                )
        return found

    def record_received(
        self,
        receipts: Sequence[Receipt],
        make_durable: Callable[[Sequence[Receipt]], None] | None = None,
    ) -> set[str]:
        """Record the instances the listener stored; return the UIDs new to the catalog.

        One transaction for the whole group (the listener's group commit:
        the C-STOREs that arrived while the last commit ran).  A receipt whose
        SOP Instance UID is recorded already, or comes later in ``receipts``
        than another of that UID, is not recorded.  ``make_durable`` is
        called with the new ones after their rows are written and before the
        commit: the listener renames their files into ``incoming/`` and
        fsyncs the folder there, so that a row is never committed before its
        file is durable; what it raises rolls the rows back and is raised
        as it is (an ``OSError`` of the caller's is not the catalog's).
        """
        for receipt in receipts:
            check_sha256(receipt.sha256, "a received file's content hash")
        first: dict[str, Receipt] = {}
        for receipt in receipts:
            first.setdefault(receipt.sop_instance_uid, receipt)
        if not first:
            return set()
        caller_failed: BaseException | None = None
        try:
            with self._write() as connection:
                new = set(
                    connection.execute(
                        _insert(connection, ReceivedRow)
                        .on_conflict_do_nothing(index_elements=[ReceivedRow.sop_instance_uid])
                        .returning(ReceivedRow.sop_instance_uid),
                        [_receipt_values(receipt) for receipt in first.values()],
                    ).scalars()
                )
                if make_durable is not None and new:
                    try:
                        make_durable([r for uid, r in first.items() if uid in new])
                    except BaseException as exc:
                        caller_failed = exc
                        raise _CallerFailed from None
        except _CallerFailed:
            assert caller_failed is not None
            raise caller_failed from None
        return new

    def record_push(self, attempts: Sequence[PushAttempt]) -> None:
        """Append what a push did with each file (history: never updated)."""
        if not attempts:
            return
        for attempt in attempts:
            check_sha256(attempt.sha256, "a pushed file's content hash")
        with self._write() as connection:
            connection.execute(
                insert(PushAttemptRow),
                [
                    {name: getattr(a, name) for name in PushAttempt.__dataclass_fields__}
                    for a in attempts
                ],
            )

    def pushed(self, node: str, version: str) -> set[str]:
        """The files of release ``version`` that ``node`` has taken (a ``sent`` attempt)."""
        with self._read() as connection:
            return set(
                connection.execute(
                    select(PushAttemptRow.relpath).where(
                        PushAttemptRow.node == node,
                        PushAttemptRow.version == version,
                        PushAttemptRow.outcome == PushOutcome.SENT,
                    )
                ).scalars()
            )

    def push_attempts(self, node: str, version: str) -> list[PushAttempt]:
        """Every attempt to push release ``version`` to ``node``, oldest first."""
        with self._read() as connection:
            rows = connection.execute(
                select(*(getattr(PushAttemptRow, n) for n in PushAttempt.__dataclass_fields__))
                .where(PushAttemptRow.node == node, PushAttemptRow.version == version)
                .order_by(PushAttemptRow.attempt_id)
            )
            return [PushAttempt(*row) for row in rows]

    def record_pull(self, attempt: PullAttempt) -> None:
        """Append what a pull did with one cohort row (history: never updated)."""
        check_sha256(attempt.query_sha256, "a cohort row's key")
        with self._write() as connection:
            connection.execute(
                insert(PullAttemptRow),
                {name: getattr(attempt, name) for name in PullAttempt.__dataclass_fields__},
            )

    def pulled(self, node: str) -> dict[str, PullAttempt]:
        """The cohort rows (by key) whose every instance ``node`` gave us: their last attempt."""
        return {
            key: attempt
            for key, attempt in self.pull_attempts(node).items()
            if attempt.outcome is PullOutcome.RETRIEVED
        }

    def pull_attempts(self, node: str) -> dict[str, PullAttempt]:
        """The last attempt of each cohort row (by key) asked of ``node``."""
        with self._read() as connection:
            rows = connection.execute(
                select(*(getattr(PullAttemptRow, n) for n in PullAttempt.__dataclass_fields__))
                .where(PullAttemptRow.node == node)
                .order_by(PullAttemptRow.attempt_id)
            )
            return {attempt.query_sha256: attempt for attempt in (PullAttempt(*r) for r in rows)}

    # -- the link table -----------------------------------------------------------------

    def import_links(self, links_sqlite: Path) -> int:
        """Absorb the link rows of a ``links.sqlite`` (every column); return the rows added.

        Idempotent: a row already here (same input sha256 and store run id)
        is left as it is, so importing the same file again adds nothing.
        """
        with self._write() as connection:
            before = self._count_links(connection)
            for rows in read_links(links_sqlite):
                connection.execute(
                    _insert(connection, LinkRow).on_conflict_do_nothing(
                        index_elements=[LinkRow.sha256, LinkRow.run_id]
                    ),
                    rows,
                )
            return self._count_links(connection) - before

    @staticmethod
    def _count_links(connection: Connection) -> int:
        return connection.execute(select(func.count()).select_from(LinkRow)).scalar_one()

    def subjects_of_patient(self, patient_id: str, issuer: str | None = None) -> set[str]:
        """The subjects a patient ID (of this issuer, if given: ``""`` for none) became."""
        query = select(LinkRow.subject).where(LinkRow.patient_id == patient_id).distinct()
        if issuer is not None:
            query = query.where(func.coalesce(LinkRow.issuer, "") == issuer)
        with self._read() as connection:
            return {subject for subject in connection.execute(query).scalars() if subject}

    def withdraw_subject(self, subject: str, run_id: int) -> set[str]:
        """Record that ``subject`` withdrew; move each of their inputs to WITHDRAWN.

        A subject's inputs are those their link rows, recorded outputs or
        released files name.  Returns the sha256s moved by this call (inputs
        already withdrawn are not moved again).  The withdrawal is appended
        to the record every time it is asked for.
        """
        if not subject:
            raise CatalogError("withdrawing needs a subject")
        now = _now()
        with self._write() as connection:
            self._require_runs(connection, {run_id})
            connection.execute(insert(WithdrawalRow).values(subject=subject, run_id=run_id, at=now))
            theirs = connection.execute(
                union(
                    # Link keys of raw inputs are sha256#n: the input is the first 64.
                    select(func.substr(LinkRow.sha256, 1, 64)).where(LinkRow.subject == subject),
                    select(OutputRow.input_sha256).where(OutputRow.subject == subject),
                    select(ReleaseFileRow.input_sha256).where(ReleaseFileRow.subject == subject),
                )
            ).scalars()
            states = self._states(connection, list(theirs), lock=True)
            moving = sorted(
                sha for sha, state in states.items() if state is not ItemState.WITHDRAWN
            )
            if moving:
                self._apply(
                    connection,
                    [StateChange(sha, ItemState.WITHDRAWN) for sha in moving],
                    run_id,
                    now,
                )
            return set(moving)

    def withdrawn_subjects(self) -> set[str]:
        """Every subject ever withdrawn."""
        with self._read() as connection:
            return set(connection.execute(select(WithdrawalRow.subject).distinct()).scalars())

    # -- helpers ------------------------------------------------------------------------

    @staticmethod
    def _require_runs(connection: Connection, run_ids: set[int]) -> None:
        found = set(
            connection.execute(select(RunRow.run_id).where(RunRow.run_id.in_(run_ids))).scalars()
        )
        missing = sorted(run_ids - found)
        if missing:
            raise CatalogError(f"there is no run {missing[0]} in the catalog: start it first")


def _decided(queue_id: Any) -> Any:
    """Whether a queue entry has any decision (an EXISTS clause)."""
    return exists().where(DecisionRow.queue_id == queue_id)


def _path_digest(path: bytes) -> bytes:
    return hashlib.sha256(bytes(path)).digest()


class _CallerFailed(Exception):
    """Carries a caller's failure out of a transaction (rolled back) without rewrapping it."""


def _receipt_values(receipt: Receipt) -> dict[str, Any]:
    return {name: getattr(receipt, name) for name in Receipt.__dataclass_fields__}


def _insert(connection: Connection, table: type[Any]) -> Any:
    """The dialect's INSERT, which has ON CONFLICT on SQLite and PostgreSQL alike."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)
