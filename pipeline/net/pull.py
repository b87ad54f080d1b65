"""Pull an approved cohort from a PACS node: ``mricurate pull --from NODE --cohort FILE``.

For each cohort row (:mod:`pipeline.net.cohort`), in the file's order:

1. C-FIND (Study Root) the studies that match it, and list each study's
   instances (:mod:`pipeline.net.query`); none: the row is *missing*;
2. retrieve each study that has an instance not yet received
   (:mod:`pipeline.net.retrieve`): by C-MOVE to our listener, which the pull
   runs for the time it takes unless told one is running already, or by
   C-GET on our own association where the node has the ``get`` role; either
   way each instance goes through the listener's
   :class:`~pipeline.net.receive.Receiver` (durable in ``incoming/`` under its
   content hash, once per SOP Instance UID, recorded in ``received``);
3. the row is *retrieved* when every listed instance is in ``received``,
   else *failed*; the outcome is appended to the catalog (``pull_attempts``).

A failure worth trying again (the node down or timing out, out of
resources, a retrieve that left instances behind) is retried with a
growing delay, a bounded number of times (:class:`Retry`).  A node that
stays down, or refuses us, stops the pull: what was retrieved is kept, and
a rerun resumes, skipping the rows whose last attempt was *retrieved*
(rows are known by the hash of what they ask for, not by their number).

The pull ends with a table of every row (asked, found, retrieved, missing)
in ``private/pulls/``: it names patients, so it is written there only; the
terminal and the log name rows by their line number in the cohort file.
"""

from __future__ import annotations

import csv
import datetime as dt
import enum
import io
import logging
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pynetdicom import _config, evt
from pynetdicom.association import Association

from pipeline.atomic import atomic_write_text
from pipeline.catalog import Catalog, PullAttempt, PullOutcome
from pipeline.net.cohort import CohortRow
from pipeline.net.echo import DEFAULT_TIMEOUTS, Timeouts, client_ae, refusal
from pipeline.net.errors import NetworkError, TransientError
from pipeline.net.listener import Listener, ListenOptions, prepare_receiving
from pipeline.net.query import Study, find_studies
from pipeline.net.receive import Peer, Receiver
from pipeline.net.retrieve import (
    Retrieval,
    get_contexts,
    get_study,
    move_contexts,
    move_study,
    study_sop_classes,
)
from pipeline.net.status import StoreStatus
from pipeline.workspace import NodeRole, PacsNode, Workspace

LOG = logging.getLogger("mricurate.pull")
PULLS_FOLDER = "pulls"
TABLE_COLUMNS = (
    "row", "accession_number", "patient_id", "study_date_from", "study_date_to", "status",
    "studies_found", "instances_found", "instances_retrieved",
)  # fmt: skip


class PullMethod(enum.Enum):
    """How the studies come to us."""

    MOVE = "move"  # C-MOVE to our listener (the node opens an association to it)
    GET = "get"  # C-GET: the node sends them back on our own association


class RowStatus(enum.Enum):
    """What became of one cohort row in this pull (the table's ``status`` column)."""

    RETRIEVED = "retrieved"  # every instance of its studies arrived in this pull
    RETRIEVED_BEFORE = "retrieved-before"  # an earlier pull retrieved it: not asked again
    MISSING = "missing"  # the node has no study that matches it
    FAILED = "failed"  # found, but not every instance arrived (retried next time)
    NOT_ASKED = "not-asked"  # the pull stopped before this row (the node went away)


@dataclass(frozen=True)
class Retry:
    """How often, and after how long, a transient failure is tried again.

    ``attempts`` in all; the first retry after ``first_delay`` seconds, each
    next one after ``factor`` times longer (1, 2, 4 s by default: a node
    restarting or a network blip; a node down for longer stops the pull).
    """

    attempts: int = 4
    first_delay: float = 1.0
    factor: float = 2.0

    def delays(self) -> Iterator[float]:
        """The delay before each retry (one fewer than the attempts)."""
        delay = self.first_delay
        for _ in range(max(self.attempts - 1, 0)):
            yield delay
            delay *= self.factor


@dataclass(frozen=True)
class RowResult:
    """One row's line of the table (the row itself holds the PHI: it stays in private/)."""

    row: CohortRow
    status: RowStatus
    studies: int = 0
    instances: int = 0
    retrieved: int = 0


@dataclass(frozen=True)
class PullReport:
    """What one pull did, row by row, and where its table is."""

    node: str
    method: PullMethod
    rows: tuple[RowResult, ...]
    table: Path
    stopped: str = ""  # why the pull stopped early (empty: it went through the cohort)

    def count(self, *statuses: RowStatus) -> int:
        return sum(result.status in statuses for result in self.rows)


@dataclass
class _Counter:
    stored: int = 0
    already: int = 0
    refused: int = 0
    outcomes: list[str] = field(default_factory=list)


def method_for(node: PacsNode, requested: PullMethod | None = None) -> PullMethod:
    """C-GET where the node has the ``get`` role, else C-MOVE; ``requested`` checked."""
    if NodeRole.QUERY not in node.roles:
        raise NetworkError(
            f'{node.name} is not a node we pull from: give it roles = ["query"] (C-FIND and '
            f'C-MOVE) or ["query", "get"] (C-GET too) in [pacs.{node.name}] of mricurate.toml'
        )
    if requested is PullMethod.GET and NodeRole.GET not in node.roles:
        raise NetworkError(
            f'{node.name} does not have the "get" role: add it to its roles in '
            f"[pacs.{node.name}] if it answers C-GET, or retrieve by C-MOVE (--by move)"
        )
    if requested is not None:
        return requested
    return PullMethod.GET if NodeRole.GET in node.roles else PullMethod.MOVE


def pull_cohort(
    workspace: Workspace,
    catalog: Catalog,
    node: PacsNode,
    rows: Sequence[CohortRow],
    *,
    cohort_name: str,
    method: PullMethod | None = None,
    ae_title: str | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    retry: Retry = Retry(),
    use_running_listener: bool = False,
    progress: Callable[[str], None] | None = None,
) -> PullReport:
    """Retrieve the studies of ``rows`` from ``node`` into ``incoming/``; write the table.

    Parameters
    ----------
    cohort_name : str
        The cohort file's stem: the table is ``private/pulls/<cohort_name>-<node>.csv``.
    method : PullMethod, optional
        C-GET or C-MOVE; by default C-GET where the node has the ``get`` role.
    ae_title : str, optional
        Ours (calling AE and move destination); default ``[listen] ae_title``.
    use_running_listener : bool
        For C-MOVE: a ``mricurate listen`` (or ``serve``) of this workspace
        already listens on ``[listen] port`` and allows the node's AE title;
        otherwise the pull runs its own listener there while it works.
    progress : callable, optional
        Called with a line per row and per retry (rows named by number only).

    Raises
    ------
    NetworkError
        The node has no ``query`` role, our listener cannot start, or the pull
        stopped (the node stayed down, or refuses us): the table is written
        first, and a rerun resumes.
    """
    chosen = method_for(node, method)
    ae_title = ae_title or workspace.config.listen.ae_title
    say = progress or (lambda line: None)
    # pynetdicom logs the identifiers of queries (accession numbers, patient IDs): never.
    _config.LOG_REQUEST_IDENTIFIERS = False
    _config.LOG_RESPONSE_IDENTIFIERS = False
    _config.STORE_RECV_CHUNKED_DATASET = True
    done = catalog.pulled(node.name)
    results: list[RowResult] = []
    stopped = ""
    with _receiving(workspace, catalog, node, chosen, use_running_listener):
        session = _Session(workspace, catalog, node, chosen, ae_title, timeouts)
        for index, row in enumerate(rows, 1):
            where = f"row {row.row} ({index} of {len(rows)})"
            before = done.get(row.key)
            if before is not None:
                results.append(RowResult(row, RowStatus.RETRIEVED_BEFORE, before.studies,
                                         before.instances, before.retrieved))  # fmt: skip
                say(f"{where}: retrieved by an earlier pull, not asked again")
                continue
            try:
                result = _with_retries(session, row, retry, where, say)
            except NetworkError as exc:
                stopped = f"stopped at row {row.row}: {exc}"
                results.extend(RowResult(r, RowStatus.NOT_ASKED) for r in rows[index - 1 :])
                break
            results.append(result)
            say(f"{where}: {result.status.value}, {result.studies} studies, "
                f"{result.retrieved} of {result.instances} instances")  # fmt: skip
    table = write_table(workspace, cohort_name, node.name, results)
    report = PullReport(node.name, chosen, tuple(results), table, stopped)
    LOG.info("pulled from %s by C-%s: %d rows retrieved, %d before, %d missing, %d failed, "
             "%d not asked", node.name, chosen.value.upper(), report.count(RowStatus.RETRIEVED),
             report.count(RowStatus.RETRIEVED_BEFORE), report.count(RowStatus.MISSING),
             report.count(RowStatus.FAILED), report.count(RowStatus.NOT_ASKED))  # fmt: skip
    if stopped:
        raise PullStopped(report)
    return report


class PullStopped(NetworkError):
    """The pull stopped before the end of the cohort; its report (and table) are kept."""

    def __init__(self, report: PullReport) -> None:
        self.report = report
        super().__init__(
            f"the pull from {report.node} {report.stopped}; the table is in {report.table}; "
            "what was retrieved is kept: run the same command again to resume"
        )


def _with_retries(
    session: _Session, row: CohortRow, retry: Retry, where: str, say: Callable[[str], None]
) -> RowResult:
    delays = retry.delays()
    while True:
        try:
            result = session.pull_row(row)
            if result.status is not RowStatus.FAILED:
                return result
            reason = f"{result.retrieved} of {result.instances} instances arrived"
        except TransientError as exc:
            result, reason = None, str(exc)
        delay = next(delays, None)
        if delay is None:
            if result is None:
                raise TransientError(f"{reason} (after {retry.attempts} attempts)")
            return result
        say(f"{where}: {reason}; trying again in {delay:g} s")
        LOG.warning("%s: %s; trying again in %g s", where, reason, delay)
        time.sleep(delay)


class _Session:
    """One node, one method: the associations of each row, and the row's outcome recorded."""

    def __init__(
        self,
        workspace: Workspace,
        catalog: Catalog,
        node: PacsNode,
        method: PullMethod,
        ae_title: str,
        timeouts: Timeouts,
    ) -> None:
        self.catalog = catalog
        self.node = node
        self.method = method
        self.ae_title = ae_title
        self.timeouts = timeouts
        self.receiver = Receiver(workspace.incoming, catalog)

    def pull_row(self, row: CohortRow) -> RowResult:
        studies, status = self._find_and_move(row)
        expected = {i.sop_instance_uid for s in studies for i in s.instances}
        if not studies:
            outcome, result = PullOutcome.MISSING, RowStatus.MISSING
            retrieved = 0
        else:
            if self.method is PullMethod.GET:
                status = self._get(
                    [s for s in studies if not self._complete(s)]
                ) or status  # fmt: skip
            retrieved = len(self.catalog.received_among(expected))
            complete = retrieved == len(expected)
            outcome = PullOutcome.RETRIEVED if complete else PullOutcome.FAILED
            result = RowStatus.RETRIEVED if complete else RowStatus.FAILED
        self.catalog.record_pull(
            PullAttempt(self.node.name, row.key, outcome, len(studies), len(expected),
                        retrieved, status, dt.datetime.now(dt.UTC))
        )  # fmt: skip
        return RowResult(row, result, len(studies), len(expected), retrieved)

    def _complete(self, study: Study) -> bool:
        uids = {i.sop_instance_uid for i in study.instances}
        return len(self.catalog.received_among(uids)) == len(uids)

    def _associate(self, contexts: Sequence[Any], **kwargs: Any) -> Association:
        ae = client_ae(self.ae_title, self.timeouts)
        ae.requested_contexts = list(contexts)
        assoc = ae.associate(self.node.host, self.node.port, ae_title=self.node.ae_title,
                             **kwargs)  # fmt: skip
        if not assoc.is_established:
            raise refusal(self.node, assoc)
        return assoc

    def _find_and_move(self, row: CohortRow) -> tuple[list[Study], int | None]:
        """C-FIND the row's studies; for C-MOVE, move each that is not complete yet."""
        assoc = self._associate(move_contexts())
        status: int | None = None
        try:
            studies = find_studies(assoc, row)
            if self.method is PullMethod.MOVE:
                for study in studies:
                    if not self._complete(study):
                        status = move_study(assoc, study.study_instance_uid,
                                            self.ae_title).status  # fmt: skip
        finally:
            _release(assoc)
        return studies, status

    def _get(self, studies: Sequence[Study]) -> int | None:
        """C-GET each study on one association that proposes their instances' classes."""
        if not studies:
            return None
        plan = get_contexts(c for s in studies for c in study_sop_classes(s.instances))
        if plan.left_out:
            LOG.warning("%d SOP classes did not fit in one association's 128 contexts: "
                        "their instances are not retrieved", len(plan.left_out))  # fmt: skip
        peer = Peer(self.node.ae_title, self.node.host)
        handlers = [(evt.EVT_C_STORE, lambda event: self._store(event, peer))]
        assoc = self._associate(plan.contexts, ext_neg=list(plan.roles), evt_handlers=handlers)
        last: Retrieval | None = None
        try:
            for study in studies:
                last = get_study(assoc, study.study_instance_uid)
        finally:
            _release(assoc)
        return None if last is None else last.status

    def _store(self, event: evt.Event, peer: Peer) -> int:
        try:
            announced = str(getattr(event.request, "AffectedSOPInstanceUID", ""))
            return int(self.receiver.store(event.dataset_path, announced, peer).status)
        except Exception as exc:  # a failure status, never a success, for anything unforeseen
            LOG.error("could not store an instance: %s; answered 'out of resources'",
                      type(exc).__name__)  # fmt: skip
            return int(StoreStatus.OUT_OF_RESOURCES)


def _release(assoc: Association) -> None:
    if assoc.is_established:
        assoc.release()


@contextmanager
def _receiving(
    workspace: Workspace, catalog: Catalog, node: PacsNode, method: PullMethod, running: bool
) -> Iterator[None]:
    """Received datasets land in ``private/receiving``; C-MOVE's listener runs meanwhile.

    ``tempfile.tempdir`` (where pynetdicom writes a dataset as it arrives) is
    restored afterwards, so a pull called inside another program leaves its
    temp folder as it was.
    """
    saved = tempfile.tempdir
    listener: Listener | None = None
    try:
        if method is PullMethod.MOVE and not running:
            options = ListenOptions.of(workspace, allow_ae=[node.ae_title])
            listener = Listener(workspace, catalog, options)
            try:
                listener.start()
            except NetworkError as exc:
                raise NetworkError(
                    f"{exc}. If `mricurate listen` or `serve` of this workspace holds the "
                    f"port, add --use-running-listener (it must allow {node.name}'s AE title: "
                    'give the node the role "sender")'
                ) from None
        else:
            prepare_receiving(workspace)
        yield
    finally:
        if listener is not None:
            listener.stop()
        tempfile.tempdir = saved


def table_path(workspace: Workspace, cohort_name: str, node: str) -> Path:
    """``private/pulls/<cohort>-<node>.csv``: the latest account of the cohort from the node."""
    return workspace.private / PULLS_FOLDER / f"{cohort_name}-{node}.csv"


def write_table(
    workspace: Workspace, cohort_name: str, node: str, results: Sequence[RowResult]
) -> Path:
    """The account of every row (PHI: the identifiers asked for), atomically, mode 0600."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TABLE_COLUMNS)
    for result in results:
        row = result.row
        writer.writerow([
            row.row, row.accession_number, row.patient_id,
            row.date_from.isoformat() if row.date_from else "",
            row.date_to.isoformat() if row.date_to else "",
            result.status.value, result.studies, result.instances, result.retrieved,
        ])  # fmt: skip
    path = table_path(workspace, cohort_name, node)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    atomic_write_text(path, buffer.getvalue(), mode=0o600)
    return path
