"""Run a step's inputs in chunks on other machines, commit them here: the runner's seam for scale-out.

The runner (:mod:`pipeline.batch.runner`) does two things that differ in
kind.  *Computing* a :class:`~pipeline.batch.step.StepResult` reads an input
and writes candidates under temporary names into an area's temp folder; any
number of processes can do it at once, anywhere the files are visible.
*Committing* it (duplicates, conflicts, renames, link rows, records,
quarantine copies) must happen once, in the process that holds the locks.
:class:`RemoteDispatch` moves only the first part: the runner hands it the
inputs it would give its own :class:`~pipeline.batch.pool.WorkerPool`, and
it yields the same ``(item, result)`` pairs in the same order, computed
elsewhere, for the runner to commit as always.  Nothing else changes, so the
commit protocol's guarantees hold as they are: no partial file under a final
name (workers write temps only), no record without its file (records are
written here, before the rename), and the next run settles a crash.

Where chunks run is a :class:`ChunkCluster` (``flows.scale_out``: Prefect
tasks on a Dask cluster).  What crosses it is opaque: a batch token and a
chunk number.  The inputs (paths: PHI), the step (it holds the key) and the
results (details and link rows: PHI) travel as 0600 files in a 0700 folder of
the private location, which the workers must see at the same path (the
workspace on a shared file system), never as task parameters or results,
which an orchestrator records.

On a worker, :func:`run_chunk` runs the chunk in a
:class:`~pipeline.batch.pool.WorkerPool` of its own, kept for the batch: the
stall watchdog, the memory ceiling and dead-worker recovery apply there as
they do in one machine, so an input that kills or hangs its process is
blamed exactly as before.  What a chunk cannot survive is the death of the
worker that runs it (the pool's parent): the cluster may retry the chunk
(its temps are fresh names, its answer replaces the earlier one), or it
fails, which is a run failure here, blaming no input.

Nor can a chunk survive a worker that hangs (a stuck file system, a call
that blocks in a library, a machine that stopped answering without
dying): the stall watchdog lives in that worker.  So every chunk has a
deadline here (``[ingest] chunk_deadline_seconds``), counted from the time
the dispatch waits for it (the chunks before it are in): past it, the chunk
is sent once more, to another worker; if that one is late too, the run
fails as a run failure, and no input is blamed (an input that hangs its
process is the stall watchdog's, and is blamed there, well before).
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from pipeline.atomic import atomic_write_bytes
from pipeline.batch.pool import PoolSettings, WorkerPool
from pipeline.batch.runner import default_memory_limit
from pipeline.batch.step import Item, Step, StepResult
from pipeline.errors import RunFailure
from pipeline.storage import sync_filesystem

CHUNKS_FOLDER = "chunks"
"""In the run's private temp folder: one 0700 folder per batch."""

MAX_CHUNK = 256
"""Inputs per chunk at most: a lost chunk costs this many inputs' work, not more."""

MIN_CHUNK = 16
"""Inputs per chunk at least, where there are that many: a chunk costs a Prefect task
run (a few API calls) and two files, which a few inputs' work would not repay."""

DEFAULT_DEADLINE_SECONDS = 3600.0
"""A chunk's deadline unless configured: well beyond a chunk's normal time and the
stall limit of one input, so that only a worker that hangs meets it."""

CHUNKS_PER_SLOT = 4
"""Chunks per worker thread a large batch is cut into: the last chunks even out the workers."""

_JOB = "job.pickle"
_MARKER = "visible"


class ChunkFuture(Protocol):
    """One submitted chunk."""

    def result(self, timeout: float | None = None) -> object:
        """Wait for it; raise if it failed (the cluster's exception, which is never shown).

        Raises :class:`TimeoutError` if it has not ended within ``timeout`` seconds.
        """
        ...

    def cancel(self) -> None:
        """Do not start it (one already running finishes, and nobody reads its answer)."""
        ...


class ChunkCluster(Protocol):
    """Where chunks run: something that calls :func:`run_chunk` on other processes."""

    @property
    def capacity(self) -> int:
        """How many chunks it runs at once (its worker threads)."""
        ...

    def open(self, batch: str, folder: Path) -> None:
        """Tell every worker, present and future, where ``batch``'s files are (:func:`register_batch`)."""
        ...

    def submit(self, batch: str, chunk: int) -> ChunkFuture:
        """Run ``run_chunk(batch, chunk)`` on a worker."""
        ...

    def resubmit(self, batch: str, chunk: int, late: ChunkFuture) -> ChunkFuture:
        """Run the chunk again on a worker other than the one that holds ``late``.

        Raises :class:`NoOtherWorker` if there is none.
        """
        ...

    def close(self, batch: str) -> None:
        """Forget ``batch`` on every worker (:func:`forget_batch`: its processes stop)."""
        ...


class NoOtherWorker(RuntimeError):
    """A late chunk cannot be sent elsewhere: the cluster has no other worker."""


@dataclass(frozen=True)
class _Job:
    step: Step
    settings: PoolSettings


@dataclass(frozen=True)
class _Answer:
    """A chunk's results, or the run failure a worker met (its message is PHI-free)."""

    results: tuple[StepResult, ...] = ()
    failure: str = ""


@dataclass(frozen=True)
class RemoteDispatch:
    """Computes results on a :class:`ChunkCluster`; a drop-in for the runner's own pool.

    Parameters
    ----------
    cluster : ChunkCluster
    chunk_size : int
        Inputs per chunk; 0: :func:`chunk_size_for` the batch and the cluster.
    deadline_seconds : float
        How long a chunk may take, counted from the time the dispatch waits
        for it; a late chunk is sent once more to another worker, and a
        second late answer fails the run.
    """

    cluster: ChunkCluster
    chunk_size: int = 0
    deadline_seconds: float = DEFAULT_DEADLINE_SECONDS

    def __call__(
        self, step: Step, items: Sequence[Item], settings: PoolSettings, stop: Callable[[], bool]
    ) -> Iterator[tuple[Item, StepResult]]:
        """Yield ``(item, result)`` in the order of ``items``; stop between chunks when ``stop()``.

        Raises
        ------
        RunFailure
            A chunk failed on the cluster (a worker died and was not replaced,
            the cluster went away) or met one of our own failures; no input is
            blamed, and what was yielded before is committed.
        """
        batch = uuid.uuid4().hex
        folder = settings.private_tmp / CHUNKS_FOLDER / batch
        folder.mkdir(mode=0o700, parents=True)
        try:
            chunks = self._cut(items)
            # One process per chunk task: the cluster's threads are the parallelism.
            # Spawned, never forked: a chunk runs in one thread of a worker that
            # runs others (Dask's), and a fork would copy their locks mid-use.
            job = _Job(step, replace(settings, jobs=1, start_method="spawn"))
            _write(folder / _JOB, job)
            for number, chunk in enumerate(chunks):
                _write(folder / _chunk_name(number), list(chunk))
            atomic_write_bytes(folder / _MARKER, batch.encode(), mode=0o600)
            self.cluster.open(batch, folder)
            try:
                yield from self._results(batch, folder, chunks, stop)
            finally:
                self.cluster.close(batch)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _cut(self, items: Sequence[Item]) -> list[Sequence[Item]]:
        size = self.chunk_size or chunk_size_for(len(items), self.cluster.capacity)
        return [items[start : start + size] for start in range(0, len(items), size)]

    def _results(
        self, batch: str, folder: Path, chunks: list[Sequence[Item]], stop: Callable[[], bool]
    ) -> Iterator[tuple[Item, StepResult]]:
        window = max(2, 2 * self.cluster.capacity)  # queued on the cluster at a time
        pending: deque[tuple[int, ChunkFuture]] = deque()
        following = 0
        try:
            while following < len(chunks) or pending:
                while following < len(chunks) and len(pending) < window and not stop():
                    pending.append((following, self.cluster.submit(batch, following)))
                    following += 1
                if not pending:
                    return  # stopped before anything more was sent
                number, future = pending.popleft()
                self._wait(batch, number, future, len(chunks))
                answer = _answer_of(folder, number, len(chunks))
                if len(answer.results) != len(chunks[number]):
                    raise RunFailure(
                        f"chunk {number} came back with {len(answer.results)} results for "
                        f"{len(chunks[number])} inputs; run again (finished inputs are kept)"
                    )
                yield from zip(chunks[number], answer.results, strict=True)
                if stop():
                    return
        finally:
            for _, future in pending:
                with contextlib.suppress(Exception):
                    future.cancel()

    def _wait(self, batch: str, number: int, future: ChunkFuture, count: int) -> None:
        """Wait for chunk ``number``; past its deadline, once more elsewhere; then a run failure."""
        if _ended(future, self.deadline_seconds, number, count):
            return
        try:
            again = self.cluster.resubmit(batch, number, future)
        except NoOtherWorker:
            raise RunFailure(
                f"chunk {number} of {count} did not finish within {self.deadline_seconds:g} s "
                "and the cluster has no other worker to send it to: its worker hangs (a stuck "
                "file system, a blocked call) or the chunk needs longer. No input is blamed; "
                "restart that Dask worker or add one, raise [ingest] chunk_deadline_seconds "
                "if the inputs are merely slow, and run again (finished inputs are kept)"
            ) from None
        except Exception as exc:  # the cluster's text is not shown (see _ended)
            raise RunFailure(
                f"chunk {number} of {count} did not finish within {self.deadline_seconds:g} s "
                f"and could not be sent to another worker ({type(exc).__name__}): check that "
                "the Dask scheduler and workers still run, and run again (finished inputs are kept)"
            ) from None
        finally:
            with contextlib.suppress(Exception):
                future.cancel()
        if not _ended(again, self.deadline_seconds, number, count):
            with contextlib.suppress(Exception):
                again.cancel()
            raise RunFailure(
                f"chunk {number} of {count} did not finish within {self.deadline_seconds:g} s, "
                "twice, on two workers: the workers hang (a stuck file system, a blocked call) "
                "or the chunk needs longer. No input is blamed; check the Dask workers' logs, "
                "restart those that hang, raise [ingest] chunk_deadline_seconds if the inputs "
                "are merely slow, and run again (finished inputs are kept)"
            )


def _ended(future: ChunkFuture, deadline: float, number: int, count: int) -> bool:
    """Whether ``future`` ended within ``deadline`` seconds (False: late); raise if it failed."""
    try:
        future.result(timeout=deadline)
    except TimeoutError:
        return False
    except Exception as exc:
        # The cluster's exception is not shown: ours carry no PHI, but a
        # library's (pickling, a comm error quoting a frame) might.
        raise RunFailure(
            f"chunk {number} of {count} failed on the cluster ({type(exc).__name__}): a worker "
            "died, the cluster went away, or a worker cannot see the workspace. No input is "
            "blamed; check the workers' logs and run again (finished inputs are kept)"
        ) from None
    return True


def chunk_size_for(inputs: int, capacity: int) -> int:
    """Inputs per chunk: equal chunks, :data:`CHUNKS_PER_SLOT` per worker thread where each
    then holds :data:`MIN_CHUNK` inputs, fewer otherwise, never more than :data:`MAX_CHUNK`."""
    chunks = min(CHUNKS_PER_SLOT * max(1, capacity), math.ceil(inputs / MIN_CHUNK))
    return max(1, min(MAX_CHUNK, math.ceil(inputs / max(1, chunks))))


def _answer_of(folder: Path, number: int, count: int) -> _Answer:
    """The answer chunk ``number`` left in ``folder`` (it ended)."""
    try:
        answer = _read(folder / _answer_name(number))
    except (OSError, pickle.UnpicklingError, EOFError) as exc:
        raise RunFailure(
            f"chunk {number} of {count} finished but its answer cannot be read "
            f"({type(exc).__name__}): do the workers write the workspace at the same path?"
        ) from None
    if not isinstance(answer, _Answer):
        raise RunFailure(f"chunk {number} of {count} came back in an unknown shape")
    if answer.failure:
        raise RunFailure(answer.failure)
    return answer


# ---------------------------------------------------------------------------
# On a worker
# ---------------------------------------------------------------------------

_FOLDERS: dict[str, Path] = {}
_POOLS: dict[tuple[str, int], tuple[_Job, WorkerPool]] = {}
# Pools a chunk is using now, and those a forget_batch asked to close meanwhile:
# a pool is used by one thread only, so its own thread closes it when its chunk ends.
_BUSY: set[tuple[str, int]] = set()
_DOOMED: dict[tuple[str, int], WorkerPool] = {}
_LOCK = threading.Lock()
_SLOTS: dict[str, int] = {}
_RAN = [0]  # chunks this process computed


def chunks_run() -> int:
    """How many chunks this process has computed (a worker's account; 0 in the flow's process)."""
    with _LOCK:
        return _RAN[0]


class UnknownBatch(RuntimeError):
    """This worker was not told where a batch's files are, or cannot see them."""


def register_batch(batch: str, folder: Path, slots: int = 1) -> None:
    """Where ``batch``'s files are; raise :class:`UnknownBatch` if this machine cannot see them.

    The check reads back the token the dispatching process wrote there: a
    folder of the same name on another file system would not hold it.
    ``slots`` is how many chunks this process runs at once (its threads): each
    chunk's worker process gets that share of this machine's memory at most.
    """
    problem = visibility_problem(batch, folder)
    if problem:
        raise UnknownBatch(problem)
    with _LOCK:
        _FOLDERS[batch] = folder
        _SLOTS[batch] = max(1, slots)


def visibility_problem(batch: str, folder: Path) -> str:
    """Why this process cannot use ``folder`` for ``batch``, or '' when it can (PHI-free)."""
    try:
        seen = (folder / _MARKER).read_bytes()
    except FileNotFoundError:
        return (
            "the workspace's private location is not visible here at the same path: mount the "
            "workspace on every worker at the path the flow uses"
        )
    except OSError as exc:
        return f"the workspace's private location cannot be read here ({exc.strerror})"
    if seen != batch.encode():
        return "the workspace's private location here is another copy, not the shared one"
    if not os.access(folder, os.W_OK):
        return "the workspace's private location is read-only here: workers must write temps"
    return ""


def forget_batch(batch: str) -> None:
    """Stop this worker's processes of ``batch`` and forget where its files were."""
    with _LOCK:
        _FOLDERS.pop(batch, None)
        _SLOTS.pop(batch, None)
        idle: list[WorkerPool] = []
        for key in [key for key in _POOLS if key[0] == batch]:
            pool = _POOLS.pop(key)[1]
            if key in _BUSY:
                _DOOMED[key] = pool  # closed by its own thread when its chunk ends
            else:
                idle.append(pool)
    for pool in idle:
        pool.close(kill=True)


def run_chunk(batch: str, chunk: int) -> int:
    """Compute chunk ``chunk`` of ``batch`` here; its answer goes to the batch folder.

    Returns the number of results (opaque).  A run failure (a full disk) is
    part of the answer, not an exception, so that its text stays in the
    private location; an exception here means the chunk could not even be
    answered, and its message is PHI-free.
    """
    with _LOCK:
        folder = _FOLDERS.get(batch)
    if folder is None:
        raise UnknownBatch(
            f"chunk {chunk}: this worker does not know the batch (it joined after the check "
            "and cannot see the workspace, or the batch ended)"
        )
    try:
        items = _read(folder / _chunk_name(chunk))
        if not isinstance(items, list):
            raise TypeError("not a chunk")
        job, pool = _pool_of(batch, folder)
        answer = _compute_owned(batch, job, pool, items)
    except Exception as exc:  # not even started: the answer names the type only
        answer = _Answer(failure=f"chunk {chunk} could not run on a worker ({type(exc).__name__})")
        forget_pool(batch)
    if not folder.is_dir():  # the batch ended (stopped, failed): nobody reads this answer
        raise UnknownBatch(f"chunk {chunk}: its batch ended before it was answered")
    _write(folder / _answer_name(chunk), answer)
    with _LOCK:
        _RAN[0] += 1
    return len(answer.results)


def forget_pool(batch: str) -> None:
    """Drop this thread's pool of ``batch`` (after a failure: the next chunk starts afresh)."""
    with _LOCK:
        entry = _POOLS.pop((batch, threading.get_ident()), None)
    if entry is not None:
        entry[1].close(kill=True)


def _pool_of(batch: str, folder: Path) -> tuple[_Job, WorkerPool]:
    """This thread's pool of ``batch``, marked in use (see :func:`_compute_owned`)."""
    key = (batch, threading.get_ident())
    with _LOCK:
        entry = _POOLS.get(key)
        if entry is not None:
            _BUSY.add(key)
            return entry
    job = _read(folder / _JOB)
    if not isinstance(job, _Job):
        raise TypeError("not a job")
    _allow_children()
    entry = (job, WorkerPool(job.step, _here(job.settings, batch), keep_workers=True))
    with _LOCK:
        _POOLS[key] = entry
        _BUSY.add(key)
    return entry


def _here(settings: PoolSettings, batch: str) -> PoolSettings:
    """The settings on this machine: no larger memory ceiling than its own share per slot.

    The dispatching process computed the ceiling from its own memory; a
    worker machine with less must not let one input take more than its share.
    """
    if settings.memory_bytes is None:
        return settings
    with _LOCK:
        slots = _SLOTS.get(batch, 1)
    return replace(settings, memory_bytes=min(settings.memory_bytes, default_memory_limit(slots)))


def _compute_owned(batch: str, job: _Job, pool: WorkerPool, items: list[Item]) -> _Answer:
    """:func:`_compute` on a pool :func:`_pool_of` marked in use; released (or closed) after.

    A forget_batch from another thread meanwhile leaves a busy pool to this
    thread: a pool is never closed under the chunk that is using it.
    """
    key = (batch, threading.get_ident())
    try:
        return _compute(job, pool, items)
    finally:
        with _LOCK:
            _BUSY.discard(key)
            doomed = _DOOMED.pop(key, None)
        if doomed is not None:
            doomed.close(kill=True)


def _compute(job: _Job, pool: WorkerPool, items: list[Item]) -> _Answer:
    try:
        results = tuple(result for _, result in pool.run(items, _never))
        # The flow's process records these candidates before it renames them:
        # they must be durable, and on a network file system only the writer can
        # flush what it wrote (a syncfs there does not reach this machine's cache).
        for folder in job.settings.temp_dirs.values():
            sync_filesystem(folder)
    except RunFailure as failure:
        return _Answer(failure=str(failure))
    return _Answer(results)


def _never() -> bool:
    return False


def _allow_children() -> None:
    """Let a daemonic process (a Dask worker by default) start the pool's worker processes.

    ``multiprocessing`` refuses children to daemonic processes, because such a
    process is killed when its own parent exits and would orphan them.  The
    pool's workers die with their parent (``PR_SET_PDEATHSIG``), so the worry
    does not apply to them.
    """
    import multiprocessing

    process = multiprocessing.current_process()
    if process.daemon:
        process.daemon = False


def _chunk_name(number: int) -> str:
    return f"chunk-{number:06d}.in"


def _answer_name(number: int) -> str:
    return f"chunk-{number:06d}.out"


def _write(path: Path, value: object) -> None:
    atomic_write_bytes(path, pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL), mode=0o600)


def _read(path: Path) -> object:
    # Only files this run wrote, in its own 0700 folder of the private location.
    return pickle.loads(path.read_bytes())
