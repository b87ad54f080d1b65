"""Worker processes that run a step over many inputs and survive each other's deaths.

Why not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its
workers dies (the OOM killer, a segfault in a decoder, a stall watchdog) the
whole pool breaks and no one knows which input did it; a run of 100,000
files must lose only that input.  Here each worker has its own pipe, is sent
a few inputs at a time and answers each one as it finishes, so the parent
always knows which input a worker holds: when a worker dies, that input is
quarantined (*worker died*, with the signal, or *stalled*), the inputs
queued behind it go to another worker, and a new worker takes its place.

Each worker:

- dies with the run (``PR_SET_PDEATHSIG``, and a thread watching its parent
  for the moment before that is set): a killed run leaves no process behind
  to hold the key or keep writing;
- ignores SIGINT and SIGTERM and runs in its own process group: Ctrl-C or a
  service manager's SIGTERM reaches the parent, which stops the workers
  itself, so no input is blamed for an interruption;
- runs under a memory ceiling (``RLIMIT_AS``): a decompression bomb or a
  huge file ends as *too large* instead of the machine's OOM killer choosing
  a victim;
- keeps its temp files (pytesseract's crops) in a private folder;
- runs a stall watchdog (:mod:`pipeline.batch.stall`).
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import multiprocessing
import os
import resource
import selectors
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from pipeline.batch.stall import STALL_EXIT, StallWatchdog
from pipeline.batch.step import Area, Item, Step, StepResult, WorkerEnv, rejected
from pipeline.errors import RunFailure, WorkersKeepDying
from pipeline.read.content import file_sha256
from pipeline.reasons import Outcome, Reason
from pipeline.storage import probe

# Inputs sent to a worker at a time: enough to keep it busy between two
# answers, few enough that a dead worker's queue is quickly handed on.
MAX_CHUNK = 16
# This many workers dying one after the other, with no input finished in
# between, is the machine failing, not this many bad inputs.
MAX_CONSECUTIVE_DEATHS = 5
_PR_SET_PDEATHSIG = 1
# Held by a thread of the parent while it works inside C libraries with locks
# of their own (the commit thread: SQLite, OpenSSL); a worker is forked only
# while it is free, since a child forked meanwhile would find those locks
# held, by a thread it does not have, for ever.
FORK_LOCK = threading.Lock()


@dataclass(frozen=True)
class PoolSettings:
    """How workers are set up.

    Attributes
    ----------
    jobs : int
        Worker processes.
    memory_bytes : int or None
        Address-space ceiling of each worker (``RLIMIT_AS``); None: none.
    stall_seconds : float
        A worker whose input makes no progress this long is stopped (0: never).
    temp_dirs : Mapping[Area, Path]
        Where the step writes each area's candidates.
    private_tmp : Path
        A 0700 folder in the private location for every other temp file.
    max_inflated_bytes : int
        See :class:`~pipeline.batch.step.WorkerEnv`.
    start_method : str
        ``fork`` (fast: the parsed rules are inherited) or ``forkserver``
        (for a parent that runs threads, such as an orchestrator).
    """

    jobs: int
    memory_bytes: int | None
    stall_seconds: float
    temp_dirs: Mapping[Area, Path]
    private_tmp: Path
    max_inflated_bytes: int
    start_method: str = "fork"


@dataclass(frozen=True)
class _Done:
    index: int
    result: StepResult


@dataclass(frozen=True)
class _Failed:
    index: int
    error: RunFailure


# ---------------------------------------------------------------------------
# In the worker
# ---------------------------------------------------------------------------


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when its parent dies; exit now if it already has."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        # The death signal follows the thread that forked us; this also covers
        # a parent that died before prctl and a start method that reparents.
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _limit_memory(limit: int | None) -> None:
    if limit is None:
        return
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _worker_main(conn: Connection, step: Step, settings: PoolSettings, parent: int) -> None:
    _die_with_parent(parent)
    # A worker's crash is reported by the parent, as the death of one input;
    # a stack dump of a segfaulting decoder would only add noise to the log.
    faulthandler.disable()
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Everything that writes "a temp file" (pytesseract's crops, the OCR
    # program's output) writes it in the private location.
    tempfile.tempdir = str(settings.private_tmp)
    os.environ["TMPDIR"] = str(settings.private_tmp)
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")
    watchdog = StallWatchdog(settings.stall_seconds)
    writable = {f"{area.value} temp folder": path for area, path in settings.temp_dirs.items()}
    writable["the private location"] = settings.private_tmp
    try:
        step.setup(WorkerEnv(settings.temp_dirs, watchdog.progress, settings.max_inflated_bytes))
        # Set after setup: loading OCR models maps far more address space than it uses.
        _limit_memory(settings.memory_bytes)
    except RunFailure as exc:
        conn.send(_Failed(-1, exc))
        return
    except Exception as exc:
        # Before any input: the setup (an engine, a library) is broken, not an input.
        failure = RunFailure(f"a worker could not start ({type(exc).__name__}: {exc})"[:500])
        conn.send(_Failed(-1, failure))
        return
    while True:
        try:
            batch: list[Item] | None = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if batch is None:
            return
        for item in batch:
            watchdog.start()
            try:
                result = step.run(item)
                if result.reason is Reason.INTERNAL_ERROR:
                    # A full disk often looks like some library's odd error.
                    probe(writable)
            except RunFailure as exc:
                conn.send(_Failed(item.index, exc))
                return
            except MemoryError:
                result = rejected(
                    Outcome.QUARANTINED,
                    Reason.TOO_LARGE,
                    "needs more memory than a worker may use (--memory-limit); "
                    "process it alone with a higher limit if the machine has the memory",
                )
            finally:
                watchdog.stop()
            conn.send(_Done(item.index, result))


# ---------------------------------------------------------------------------
# In the parent
# ---------------------------------------------------------------------------


@dataclass(eq=False)
class _Worker:
    process: Any  # multiprocessing.Process of the chosen context
    conn: Connection
    assigned: deque[Item] = field(default_factory=deque)


class WorkerPool:
    """Runs ``step`` over items in worker processes; results come back in item order.

    With ``keep_workers``, the workers outlive a :meth:`run` that ended with
    every item answered, for the next one (a worker of a Dask cluster runs
    many chunks of one batch); :meth:`close` ends them.  A run that fails or
    stops early still kills them.
    """

    def __init__(self, step: Step, settings: PoolSettings, *, keep_workers: bool = False) -> None:
        self._step = step
        self._settings = settings
        self._keep_workers = keep_workers
        self._context: Any = multiprocessing.get_context(settings.start_method)
        self._workers: list[_Worker] = []
        self._deaths_in_a_row = 0
        self._selector = selectors.DefaultSelector()

    def run(self, items: list[Item], stop: Callable[[], bool]) -> Iterator[tuple[Item, StepResult]]:
        """Yield ``(item, result)`` in the order of ``items``; stop early when ``stop()``.

        Raises
        ------
        RunFailure
            A worker met one of our own failures (a full disk), or workers
            keep dying; the pool is stopped first.
        """
        queue: deque[Item] = deque(items)
        done: dict[int, StepResult] = {}
        order = iter(items)
        waiting = next(order, None)
        answered = False
        try:
            while waiting is not None:
                stopping = stop()
                if not stopping:
                    self._dispatch(queue)
                # When stopping, answers already sent are still taken: that work is done.
                for worker, message in self._answers(timeout=0 if stopping else 0.25):
                    if message is not None or not stopping:
                        self._take(worker, message, done, queue)
                while waiting is not None and waiting.index in done:
                    yield waiting, done.pop(waiting.index)
                    waiting = next(order, None)
                if stopping:
                    return
            answered = True
        finally:
            if not (answered and self._keep_workers):
                self.close(kill=True)

    # -- dispatching --------------------------------------------------------

    def _dispatch(self, queue: deque[Item]) -> None:
        # No more workers than inputs left: one raw file does not start a process per CPU.
        held = sum(len(worker.assigned) for worker in self._workers)
        while queue and len(self._workers) < min(self._settings.jobs, len(queue) + held):
            self._workers.append(self._start())
        per_worker = max(1, min(MAX_CHUNK, len(queue) // (2 * self._settings.jobs) or 1))
        for worker in self._workers:
            # Two chunks in flight: the next is in the pipe when one ends.
            if queue and len(worker.assigned) <= per_worker:
                chunk = [queue.popleft() for _ in range(min(per_worker, len(queue)))]
                worker.assigned.extend(chunk)
                # If it died, its sentinel reports it and its items are handed on.
                with contextlib.suppress(OSError):
                    worker.conn.send(chunk)

    def _start(self) -> _Worker:
        parent_end, child_end = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_end, self._step, self._settings, os.getpid()),
            name="mricurate-worker",
            daemon=True,
        )
        with FORK_LOCK:
            process.start()
        child_end.close()
        worker = _Worker(process, parent_end)
        # One selector for the pool's life: building one per wait cost more than the wait.
        self._selector.register(parent_end, selectors.EVENT_READ, (worker, True))
        self._selector.register(process.sentinel, selectors.EVENT_READ, (worker, False))
        return worker

    def _forget(self, worker: _Worker) -> None:
        for handle in (worker.conn, worker.process.sentinel):
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(handle)
        self._workers.remove(worker)
        worker.conn.close()

    # -- answers ------------------------------------------------------------

    def _answers(self, timeout: float) -> Iterator[tuple[_Worker, _Done | _Failed | None]]:
        """Messages from workers; ``None`` for a worker that died."""
        if not self._workers:
            return
        dead: list[_Worker] = []
        for key, _ in self._selector.select(timeout):
            worker, is_pipe = key.data
            if worker in dead:
                continue
            try:
                while worker.conn.poll():
                    yield worker, worker.conn.recv()
            except (EOFError, OSError):
                dead.append(worker)
                continue
            if not is_pipe:  # its sentinel: answers sent before it died were taken above
                dead.append(worker)
        for worker in dead:
            yield worker, None

    def _take(
        self,
        worker: _Worker,
        message: _Done | _Failed | None,
        done: dict[int, StepResult],
        queue: deque[Item],
    ) -> None:
        if isinstance(message, _Failed):
            raise message.error
        if isinstance(message, _Done):
            item = worker.assigned.popleft()
            assert item.index == message.index, "a worker answers its inputs in order"
            done[item.index] = message.result
            self._deaths_in_a_row = 0
            return
        # The worker died (or closed its pipe: then it is made to).
        worker.process.join(timeout=5)
        if worker.process.is_alive():
            worker.process.kill()
            worker.process.join()
        self._forget(worker)
        if not worker.assigned:
            return
        held = worker.assigned.popleft()
        queue.extendleft(reversed(worker.assigned))
        done[held.index] = self._death_result(held, worker.process.exitcode)
        self._deaths_in_a_row += 1
        if self._deaths_in_a_row >= MAX_CONSECUTIVE_DEATHS:
            raise WorkersKeepDying(
                f"{self._deaths_in_a_row} worker processes died one after the other, on "
                "different inputs, with none finished in between: the machine is failing "
                "(memory, a killed service, a broken library), not the inputs. Check the system "
                "log (dmesg for the OOM killer), then run again: finished inputs are kept."
            )

    def _death_result(self, item: Item, exitcode: int | None) -> StepResult:
        try:
            sha = file_sha256(item.path)  # names the quarantined copy
        except OSError:
            sha = ""
        if exitcode == STALL_EXIT:
            return rejected(
                Outcome.QUARANTINED,
                Reason.STALLED,
                f"no progress for {self._settings.stall_seconds:g} s: its worker was stopped "
                "(a damaged file can keep a decoder busy forever); check the file, or raise "
                "--stall-seconds for very slow storage",
                sha,
            )
        if exitcode is not None and exitcode < 0:
            how = f"killed by {signal.Signals(-exitcode).name}"
            if -exitcode == signal.SIGKILL:
                how += " (often the kernel's OOM killer: see dmesg)"
        else:
            how = f"exit status {exitcode}"
        return rejected(
            Outcome.QUARANTINED,
            Reason.WORKER_DIED,
            f"its worker process died while processing it ({how}); the rest of the run went "
            "on. Process it alone to see whether it kills the worker again.",
            sha,
        )

    # -- stopping -----------------------------------------------------------

    def close(self, *, kill: bool = False) -> None:
        """Stop every worker: ask idle ones to finish; with ``kill``, SIGKILL them all."""
        for worker in self._workers:
            if kill:
                with contextlib.suppress(OSError):
                    worker.process.kill()
            else:
                with contextlib.suppress(OSError):
                    worker.conn.send(None)
        for worker in list(self._workers):
            worker.process.join(timeout=5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            self._forget(worker)
