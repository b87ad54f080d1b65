"""Turn step results into released files and records, crash-consistently.

The order of a batch is what makes it safe to kill the run at any moment:

1. make the batch's temp files durable, and the previous batch's renames
   with them (one ``syncfs`` per file system);
2. copy rejected inputs into the private quarantine;
3. in one transaction: mark the previous batch done, and record this one,
   its outputs *pending* (input rows, link rows, output rows with their temp
   names, source states);
4. rename the temp files onto their final names.

The last batch is synced and marked done when the run closes.

So a released file always has its record and link rows (they were written
first), and a record whose rename never happened is finished or withdrawn
by :func:`reconcile` at the start of the next run.

Before recording, each candidate is decided against this run's earlier
outputs and the outputs recorded by earlier runs:

- the same bytes already released from the same input: *unchanged* (the
  file is not touched, its inode stays);
- the same bytes from another input: *duplicate*;
- other bytes from the same input (a rule or key option changed): rewritten;
- other bytes from another input: this run's *output conflict*, or, against
  an earlier run, *changed at the source* (a file whose identity, e.g. its
  SOP Instance UID, was released with other content): never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType

from pipeline.batch.step import Area, Candidate, Item, StepResult
from pipeline.errors import LocationError
from pipeline.phi import Phi
from pipeline.private_store import InputRow, OutputRow, PrivateStore, SourceState
from pipeline.reasons import Outcome, Reason
from pipeline.storage import fsync_folder, sync_filesystem, writing

# Batches of about this many inputs are recorded and renamed together, or what
# finished in this many seconds (slow inputs: raw data, OCR) if that is fewer.
COMMIT_BATCH = 256
COMMIT_SECONDS = 2.0
_SKIPPABLE = frozenset({Outcome.WRITTEN, Outcome.UNCHANGED, Outcome.DUPLICATE, Outcome.NOT_COPIED})


@dataclass(frozen=True)
class _Pending:
    item: Item
    result: StepResult
    stat: os.stat_result | None


class _Decision:
    WRITE = "write"
    UNCHANGED = "unchanged"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"
    CHANGED = "changed"


class Committer:
    """Collects results in input order and commits them in batches.

    Parameters
    ----------
    store : PrivateStore
    run_id, command : str
    areas : Mapping[Area, Path]
        Output folders, resolved.
    config_digest, key_fingerprint : str
        What produced these outputs, recorded so a rerun can skip unchanged inputs.
    incremental : bool
        Record source states (the step supports skipping unchanged inputs).
    """

    def __init__(
        self,
        store: PrivateStore,
        run_id: str,
        command: str,
        areas: Mapping[Area, Path],
        config_digest: str,
        key_fingerprint: str,
        *,
        incremental: bool,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.command = command
        self.areas = dict(areas)
        self.roots = {area: os.fsencode(path) for area, path in self.areas.items()}
        self.roots_text = {area: os.fspath(path) for area, path in self.areas.items()}
        self.config_digest = config_digest
        self.key_fingerprint = key_fingerprint
        self.incremental = incremental
        self._pending: list[_Pending] = []
        self._this_run: dict[tuple[bytes, str], tuple[str, str]] = {}  # -> (input, output sha)
        self._made_dirs: set[str] = set()
        self._last_flush = time.monotonic()
        self._taken = 0  # batches taken to commit
        self._unsynced: int | None = None  # a batch renamed, not yet synced nor marked done

    def add(self, item: Item, result: StepResult, stat: os.stat_result | None) -> None:
        self._pending.append(_Pending(item, result, stat))

    @property
    def waiting(self) -> int:
        """Results added since the last :meth:`take`."""
        return len(self._pending)

    @property
    def full(self) -> bool:
        if len(self._pending) >= COMMIT_BATCH:
            return True
        return bool(self._pending) and time.monotonic() - self._last_flush > COMMIT_SECONDS

    def due(self, remaining: int) -> bool:
        """Whether to commit now, with ``remaining`` results still to come.

        A full batch; or, in a run of more than one batch, among its last
        quarter batch, whatever is there: the commit thread then takes the last
        results as they come, and little is left to commit after the last one.
        """
        if self.full:
            return True
        return bool(self._pending) and self._taken > 0 and remaining < COMMIT_BATCH // 4

    def close(self) -> None:
        """Make the last batch's renames durable and mark it done."""
        if self._unsynced is not None:
            self._make_durable([], force=True)
            self.store.finish_commit(self._unsynced)
            self._unsynced = None

    def discard(self) -> None:
        """Drop what is not committed (a stopped run): temps removed, nothing recorded.

        A batch already renamed but not yet synced stays *pending*: the next
        run finds its files in place and marks it done.
        """
        for pending in self._pending:
            pending.result.discard_temps()
        self._pending.clear()

    def flush(self) -> list[tuple[Item, StepResult]]:
        """Commit everything added so far; return the final results in input order."""
        return self.commit(self.take())

    def take(self) -> list[_Pending]:
        """What was added since the last take, for :meth:`commit` (perhaps on another thread)."""
        batch, self._pending = self._pending, []
        self._last_flush = time.monotonic()
        self._taken += bool(batch)
        return batch

    def commit(self, batch: list[_Pending]) -> list[tuple[Item, StepResult]]:
        """Commit a batch from :meth:`take`; return its final results in input order.

        Batches are committed one at a time, in the order they were taken.
        """
        if not batch:
            return []
        recorded = self.store.recorded_outputs(
            (self.roots[c.area], c.relpath) for p in batch for c in p.result.outputs
        )
        finals: list[tuple[_Pending, StepResult, list[Candidate]]] = []
        for pending in batch:
            result, renames = self._decide(pending.result, recorded)
            finals.append((pending, result, renames))
        renamed = [c for _, _, renames in finals for c in renames]
        self._make_durable(renamed)
        self._quarantine([(p, r) for p, r, _ in finals])
        commit = self.store.begin_commit(
            self.run_id,
            [self._input_row(p.item, r) for p, r, _ in finals],
            [
                (link.key, link.relpath, link.record)
                for _, r, _ in finals
                if r.outcome is Outcome.WRITTEN
                for link in r.links
            ],
            [
                OutputRow(self.roots[c.area], c.relpath, r.sha256, c.sha256, os.fsencode(c.temp))
                for _, r, renames in finals
                for c in renames
            ],
            [(self.command, s) for s in self._source_states(finals)],
            finishing=self._unsynced,
        )
        self._rename_all(renamed)
        # The renames are made durable by the next batch's sync (or close()),
        # which also marks this batch done: one sync per batch, not one per folder.
        self._unsynced = commit if renamed else None
        if not renamed:
            self.store.finish_commit(commit)
        return [(p.item, r) for p, r, _ in finals]

    # -- deciding -----------------------------------------------------------

    def _decide(
        self, result: StepResult, recorded: Mapping[tuple[bytes, str], OutputRow]
    ) -> tuple[StepResult, list[Candidate]]:
        if result.outcome is not Outcome.WRITTEN or not result.outputs:
            return result, []
        decisions = [(c, self._decide_one(result.sha256, c, recorded)) for c in result.outputs]
        kinds = {d for _, d in decisions}
        if kinds & {_Decision.CONFLICT, _Decision.CHANGED}:
            result.discard_temps()
            if _Decision.CONFLICT in kinds:
                reason, detail = (
                    Reason.OUTPUT_CONFLICT,
                    (
                        "another input of this run becomes the same output (e.g. the same SOP "
                        "Instance UID) with different content; check which copy is the right one and "
                        "process it alone"
                    ),
                )
            else:
                reason, detail = (
                    Reason.CHANGED_AT_SOURCE,
                    (
                        "an output of this identity (e.g. its SOP Instance UID) was released from "
                        "other content by an earlier run; it is not overwritten. If the new copy is "
                        "the right one, withdraw the old output first"
                    ),
                )
            return (
                replace(
                    result, outcome=Outcome.QUARANTINED, reason=reason, detail=Phi(detail),
                    outputs=(), links=(),
                ),
                [],
            )  # fmt: skip
        for candidate, _ in decisions:
            self._this_run[(self.roots[candidate.area], candidate.relpath)] = (
                result.sha256,
                candidate.sha256,
            )
        renames = [c for c, d in decisions if d == _Decision.WRITE]
        for candidate, decision in decisions:
            if decision != _Decision.WRITE:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(candidate.temp)
        if renames:
            return result, renames
        if kinds == {_Decision.DUPLICATE}:
            return replace(result, outcome=Outcome.DUPLICATE, reason=Reason.DUPLICATE), []
        return replace(result, outcome=Outcome.UNCHANGED), []

    def _decide_one(
        self, input_sha: str, c: Candidate, recorded: Mapping[tuple[bytes, str], OutputRow]
    ) -> str:
        key = (self.roots[c.area], c.relpath)
        if key in self._this_run:
            # Two inputs of this run (two copies, or one instance exported twice).
            _, previous_output = self._this_run[key]
            return _Decision.DUPLICATE if previous_output == c.sha256 else _Decision.CONFLICT
        final = os.path.join(self.roots_text[c.area], c.relpath)
        row = recorded.get(key)
        if not os.path.lexists(final):
            return _Decision.WRITE
        if row is None:
            # A file with no record (written before records were kept): same bytes stay.
            return _Decision.UNCHANGED if _file_sha256(Path(final)) == c.sha256 else _Decision.WRITE
        if row.output_sha256 == c.sha256:
            return _Decision.UNCHANGED if row.input_sha256 == input_sha else _Decision.DUPLICATE
        if row.input_sha256 == input_sha:
            return _Decision.WRITE  # rewritten: the rules or options changed
        return _Decision.CHANGED

    # -- writing ------------------------------------------------------------

    def _make_durable(self, candidates: list[Candidate], *, force: bool = False) -> None:
        """Sync the file systems of areas with temp files not yet durable.

        When the previous batch's renames are not synced yet, every area is
        synced: that makes them durable too, so the previous batch can be
        marked done in this batch's transaction.
        """
        areas = {c.area for c in candidates if not c.durable}
        if force or self._unsynced is not None:
            areas = set(self.areas)
        for area in areas:
            root = self.areas[area]
            with writing(self._area_name(root), root):
                sync_filesystem(root)

    def _quarantine(self, finals: list[tuple[_Pending, StepResult]]) -> None:
        for pending, result in finals:
            if result.outcome.kept_privately and result.sha256:
                # Gone from the source since it was read: its record still says why.
                with contextlib.suppress(FileNotFoundError):
                    self.store.quarantine_file(
                        pending.item.path,
                        result.sha256,
                        result.reason.value if result.reason else "",
                        result.detail.reveal(),
                    )

    def _rename_all(self, candidates: list[Candidate]) -> None:
        """Rename a batch's temp files onto their final names, in order."""
        # Paths as strings: a Path per file cost more than the rename itself.
        names = {area: self._area_name(root) for area, root in self.areas.items()}
        for candidate in candidates:
            root = self.areas[candidate.area]
            with writing(names[candidate.area], root):
                final = os.path.join(self.roots_text[candidate.area], candidate.relpath)
                folder = os.path.dirname(final)
                if folder not in self._made_dirs:
                    self._make_folder(root, Path(folder))
                    self._made_dirs.add(folder)
                os.chmod(candidate.temp, 0o644)
                os.replace(candidate.temp, final)

    def _make_folder(self, root: Path, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if not folder.resolve().is_relative_to(root):
            raise LocationError(
                f"a folder inside {self._area_name(root)} {root} is a link that leads "
                "out of it; remove the link, then run again"
            )

    def _area_name(self, folder: Path) -> str:
        for area, root in self.areas.items():
            if folder == root or folder.is_relative_to(root):
                return "OUTPUT" if area is Area.RELEASE else f"the {area.value} folder"
        return "OUTPUT"

    # -- records ------------------------------------------------------------

    def _input_row(self, item: Item, result: StepResult) -> InputRow:
        return InputRow(
            item.raw_path,
            result.sha256,
            result.outcome.value,
            result.reason.value if result.reason else "",
            result.detail.reveal(),
            ";".join(c.relpath for c in result.outputs),
        )

    def _source_states(
        self, finals: list[tuple[_Pending, StepResult, list[Candidate]]]
    ) -> list[SourceState]:
        if not self.incremental:
            return []
        states = []
        for pending, result, _ in finals:
            stat = pending.stat
            if stat is None or not result.sha256:
                continue
            if result.outcome is Outcome.UNCHANGED and not result.outputs:
                continue  # skipped without being read: its recorded state stays as it was
            outputs = (
                tuple((self.roots[c.area], c.relpath) for c in result.outputs)
                if result.outcome in _SKIPPABLE
                else ()
            )
            states.append(
                SourceState(
                    pending.item.raw_path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns,
                    stat.st_ino, stat.st_dev, result.sha256, result.outcome.value,
                    self.config_digest, self.key_fingerprint, outputs,
                )
            )  # fmt: skip
        return states


class CommitThread:
    """Commits a :class:`Committer`'s batches on a thread of its own while the run goes on.

    A commit mostly waits: for the file system's sync, SQLite's fsync, the
    renames.  Done where the results are collected, it stopped the run from
    handing out inputs meanwhile, and a worker idled once the inputs it held
    were done.  Here the run keeps collecting and dispatching while one batch
    is committed; batches are still committed one at a time, in input order,
    each exactly as :meth:`Committer.commit` does it (durable, recorded, then
    renamed).  Only this thread uses the committer's store while it runs.

    Parameters
    ----------
    committer : Committer
    fork_lock : threading.Lock
        Held while a batch is committed; the pool forks a worker only while
        it is free (:data:`pipeline.batch.pool.FORK_LOCK`): a child forked
        while this thread is inside SQLite or OpenSSL would inherit their
        locks held, and wait for them forever.
    """

    def __init__(self, committer: Committer, fork_lock: threading.Lock) -> None:
        self._committer = committer
        self._fork_lock = fork_lock
        self._todo: queue.SimpleQueue[list[_Pending] | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[list[tuple[Item, StepResult]] | BaseException] = (
            queue.SimpleQueue()
        )
        self._busy = False  # a batch handed over whose results were not taken back
        self._thread: threading.Thread | None = None

    @property
    def idle(self) -> bool:
        """No batch is being committed (a finished one's results may wait for :meth:`wait`)."""
        return not self._busy or not self._done.empty()

    def submit(self, batch: list[_Pending]) -> list[tuple[Item, StepResult]]:
        """Hand ``batch`` over; first wait for the batch before it, and return its results."""
        finals = self.wait()
        if batch:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="commit", daemon=True)
                self._thread.start()
            self._todo.put(batch)
            self._busy = True
        return finals

    def ready(self) -> list[tuple[Item, StepResult]]:
        """The results of a batch committed meanwhile, if any (never waits)."""
        return self.wait() if self._busy and not self._done.empty() else []

    def wait(self) -> list[tuple[Item, StepResult]]:
        """The results of the batch being committed, once it is; raise what its commit raised."""
        if not self._busy:
            return []
        done = self._done.get()
        self._busy = False
        if isinstance(done, BaseException):
            raise done
        return done

    def __enter__(self) -> CommitThread:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Let a batch being committed finish (never leave it half-renamed), then end the thread."""
        if self._thread is None:
            return
        self._todo.put(None)
        self._thread.join()
        self._thread = None

    def _loop(self) -> None:
        while (batch := self._todo.get()) is not None:
            try:
                with self._fork_lock:
                    finals = self._committer.commit(batch)
            except BaseException as exc:  # raised again where the run waits for it
                self._done.put(exc)
            else:
                self._done.put(finals)


def can_skip(state: SourceState | None, stat: os.stat_result, digest: str, key: str) -> bool:
    """Whether an input is unchanged since its outputs were written, and they are all there."""
    if state is None or not state.same_file(stat):
        return False
    if state.config_digest != digest or state.key_fingerprint != key:
        return False
    if Outcome(state.outcome) not in _SKIPPABLE:
        return False  # quarantined or held back: tried again (a limit or a rule may have changed)
    return all(os.path.lexists(Path(os.fsdecode(root)) / rel) for root, rel in state.outputs)


def reconcile(store: PrivateStore) -> int:
    """Finish or withdraw batches a crashed run recorded but did not finish renaming.

    A pending output whose temp file is there is renamed into place (it was
    durable before it was recorded); one whose final file is there was
    renamed already; one with neither is withdrawn with its links, so no
    record points at a file that is not there.  Returns the batches settled.
    """
    pending = store.pending_commits()
    for commit in pending:
        lost = []
        for row in commit.outputs:
            final = Path(os.fsdecode(row.area_root)) / row.relpath
            temp = Path(os.fsdecode(row.temp)) if row.temp else None
            if temp is not None and temp.exists():
                with writing("OUTPUT", final.parent):
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(temp, final)
                    fsync_folder(final.parent)
            elif not os.path.lexists(final):
                lost.append(row)
        if lost:
            store.withdraw_outputs(commit.commit_id, lost)
        store.finish_commit(commit.commit_id)
    return len(pending)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with contextlib.suppress(OSError), path.open("rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()
