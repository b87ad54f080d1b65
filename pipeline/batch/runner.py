"""The one batch runner: any step over every input under SOURCE.

``deid``, ``convert`` and ``scan`` are this runner with different steps, and
the flows call the same steps in batches.  What it guarantees, whatever the
step:

- **One run at a time** per OUTPUT and private location (:mod:`.locks`),
  and a layout that cannot release PHI (:mod:`.locations`), checked before
  anything is written; an OUTPUT or private location used with another key
  is refused.
- **Every input accounted for**, in exactly one :class:`~pipeline.reasons.Outcome`.
- **Faults cost only what they hit**: a dead or stalled worker costs the
  input it held (:mod:`.pool`); our own failures (a full disk) stop the run
  without blaming an input (:class:`~pipeline.errors.RunFailure`); SIGINT and
  SIGTERM stop it cleanly, with the summary of what was done.
- **Crash-consistent** files and records (:mod:`.commit`), and the next run
  settles what a crash left.
- **Incremental**: an input unchanged since its outputs were written by the
  same rules and key is not read again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Protocol

from pipeline.batch.commit import Committer, CommitThread, can_skip, reconcile
from pipeline.batch.locations import check_locations
from pipeline.batch.locks import RunLock
from pipeline.batch.pool import FORK_LOCK, PoolSettings, WorkerPool
from pipeline.batch.step import Area, Item, Step, StepResult
from pipeline.errors import KeyFileError, RunFailure
from pipeline.private_store import PrivateStore
from pipeline.read.content import opaque_key
from pipeline.read.discover import discover
from pipeline.reasons import Outcome, Reason
from pipeline.storage import writing

# The folder a run keeps in each OUTPUT: its lock, which key wrote it, temp files.
STATE_DIR = ".mricurate"
DEFAULT_STALL_SECONDS = 600.0
DEFAULT_MAX_INFLATED_BYTES = 512 << 20
# Results waiting while a batch is committed, before the run waits for that commit.
_BACKLOG = 1024
_GiB = 1 << 30


def default_jobs() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_memory_limit(jobs: int) -> int:
    """Each worker's share of four fifths of the machine's memory (at least 2 GiB).

    All workers together then stay below what the machine has, so one huge
    input fails alone instead of the kernel killing whatever it picks.
    """
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 4 * _GiB
    return max(2 * _GiB, physical * 4 // 5 // max(1, jobs))


class Dispatch(Protocol):
    """Computes the results of the inputs a run does not skip, in their order.

    The default is this machine's :class:`~pipeline.batch.pool.WorkerPool`;
    :class:`pipeline.batch.remote.RemoteDispatch` computes them on a cluster.
    Either way the run commits them here, under its locks.
    """

    def __call__(
        self, step: Step, items: Sequence[Item], settings: PoolSettings, stop: Callable[[], bool]
    ) -> Iterator[tuple[Item, StepResult]]: ...


def local_dispatch(
    step: Step, items: Sequence[Item], settings: PoolSettings, stop: Callable[[], bool]
) -> Iterator[tuple[Item, StepResult]]:
    """This machine's worker processes (the default :class:`Dispatch`)."""
    yield from WorkerPool(step, settings).run(list(items), stop)


@dataclass(frozen=True)
class RunOptions:
    """How a run is carried out (nothing here changes what an output contains)."""

    jobs: int = field(default_factory=default_jobs)
    stall_seconds: float = DEFAULT_STALL_SECONDS
    memory_bytes: int | None = None  # None: default_memory_limit(jobs)
    max_inflated_bytes: int = DEFAULT_MAX_INFLATED_BYTES
    key_file: Path | None = None
    start_method: str = "fork"
    handle_signals: bool = True  # only possible in the main thread
    # The outputs are staged inside the private location until a later check
    # publishes them (the ingest flow); see check_locations.
    staged: bool = False
    # Where results are computed: this machine's pool, or a cluster (remote.py).
    dispatch: Dispatch = local_dispatch


@dataclass(frozen=True)
class RunSummary:
    """PHI-free account of a run: counts, opaque input keys per reason, step facts."""

    run_id: str
    command: str
    seen: int
    outcomes: dict[Outcome, int]
    reasons: dict[Reason, list[str]]  # reason -> opaque input keys
    facts: dict[str, int] = field(default_factory=dict)
    stopped_by: str = ""  # SIGINT / SIGTERM when the run was stopped before its end
    failure: str = ""  # why the run failed (a RunFailure's message, PHI-free)

    @property
    def written(self) -> int:
        return self.outcomes.get(Outcome.WRITTEN, 0)

    def count(self, outcome: Outcome) -> int:
        return self.outcomes.get(outcome, 0)

    @property
    def exit_status(self) -> int:
        if self.stopped_by:
            return 128 + int(signal.Signals[self.stopped_by])
        return 3 if self.failure else 0

    def as_dict(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "command": self.command,
            "seen": self.seen,
            "outcomes": {o.value: n for o, n in self.outcomes.items()},
            "reasons": {r.value: keys for r, keys in self.reasons.items()},
            "facts": self.facts,
            "stopped_by": self.stopped_by,
            "failure": self.failure,
        }


class _Tally:
    def __init__(self) -> None:
        self.outcomes: Counter[Outcome] = Counter()
        self.reasons: defaultdict[Reason, list[str]] = defaultdict(list)
        self.facts: Counter[str] = Counter()
        self.done = 0

    def add(self, item: Item, result: StepResult) -> None:
        self.done += 1
        self.outcomes[result.outcome] += 1
        if result.reason is not None and result.reason is not Reason.DUPLICATE:
            self.reasons[result.reason].append(opaque_key(result.sha256, item.raw_path))
        for name, number in result.facts:
            self.facts[name] += number
        for doubt in result.doubts:
            self.facts[doubt.review_fact] += 1

    def summary(self, run_id: str, command: str, seen: int, **end: str) -> RunSummary:
        return RunSummary(
            run_id, command, seen, dict(self.outcomes), dict(self.reasons), dict(self.facts), **end
        )


class _Stop:
    """SIGINT / SIGTERM set a flag that the run checks between answers."""

    def __init__(self, enabled: bool) -> None:
        self.signal: signal.Signals | None = None
        self._previous: dict[int, object] = {}
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> _Stop:
        if self._enabled:
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.signal = self.signal or signal.Signals(number)

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)  # type: ignore[arg-type]

    def __call__(self) -> bool:
        return self.signal is not None


def run_batch(
    step: Step,
    source: Path,
    store: PrivateStore,
    options: RunOptions | None = None,
    *,
    on_result: Callable[[Item, StepResult], None] | None = None,
    progress: Callable[[int, int], None] | None = None,
    inputs: Sequence[Path] | None = None,
) -> RunSummary:
    """Run ``step`` over every input under ``source``; return the run's summary.

    Parameters
    ----------
    inputs : sequence of Path, optional
        Only these files under ``source``, in this order (the ingest flow
        chooses them from its catalog); default: every file under ``source``.
    on_result : callable, optional
        Called in the parent with each final result, in input order (the
        scan collects its findings so).
    progress : callable, optional
        Called with (inputs done, inputs seen) as the run advances.

    Raises
    ------
    LocationError, KeyFileError, RunLocked
        Before anything is written.
    RunFailure
        Our own failure during the run; ``summary`` on the exception says
        what was done before it.
    """
    options = options or RunOptions()
    areas = {area: path.resolve() for area, path in step.areas.items()}
    names = {_area_name(area): path for area, path in step.areas.items()}
    check_locations(source, names, store.root, options.key_file, staged=options.staged)
    with contextlib.ExitStack() as held:
        held.enter_context(RunLock(store.root, f"the private location {store.root}", step.command))
        _check_key(step, store, areas)  # before OUTPUT is created: a refusal writes nothing
        for area, path in areas.items():
            with writing(_area_name(area), path):
                path.mkdir(parents=True, exist_ok=True)
            held.enter_context(
                RunLock(path / STATE_DIR, f"{_area_name(area)} {step.areas[area]}", step.command)
            )
        _check_key(step, store, areas, record=True)  # again, now that OUTPUT is ours
        reconcile(store)
        temp_dirs = {
            area: _fresh(path / STATE_DIR / "tmp", _area_name(area)) for area, path in areas.items()
        }
        private_tmp = _fresh(store.root / "tmp", "the private location")
        try:
            return _run(
                step, source, store, options, areas, temp_dirs, private_tmp, on_result, progress,
                inputs,
            )  # fmt: skip
        finally:
            for folder in (*temp_dirs.values(), private_tmp):
                shutil.rmtree(folder, ignore_errors=True)


def _run(
    step: Step,
    source: Path,
    store: PrivateStore,
    options: RunOptions,
    areas: Mapping[Area, Path],
    temp_dirs: Mapping[Area, Path],
    private_tmp: Path,
    on_result: Callable[[Item, StepResult], None] | None,
    progress: Callable[[int, int], None] | None,
    inputs: Sequence[Path] | None,
) -> RunSummary:
    paths = discover(source.resolve()) if inputs is None else list(inputs)
    items = [Item(path, index) for index, path in enumerate(paths)]
    run_id = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]
    digest = step.digest()
    store.start_run(
        run_id,
        dt.datetime.now(dt.UTC).isoformat(),
        step.command,
        source=os.fsencode(source.resolve()),  # bytes: a name need not be UTF-8
        output=b";".join(os.fsencode(p) for p in areas.values()),
        profile=step.command,
        profile_digest=digest,
        key_fingerprint=step.key_fingerprint,
    )
    committer = Committer(
        store, run_id, step.command, areas, digest, step.key_fingerprint,
        incremental=step.incremental,
    )  # fmt: skip
    tally = _Tally()

    def settle(finals: list[tuple[Item, StepResult]]) -> None:
        for item, result in finals:
            tally.add(item, result)
            if on_result is not None:
                on_result(item, result)
        if progress is not None:
            progress(tally.done, len(items))

    stats = _stats(items)
    skipped, dispatched = _split_unchanged(step, store, items, stats, digest)
    memory = options.memory_bytes or default_memory_limit(options.jobs)
    settings = PoolSettings(
        jobs=max(1, options.jobs), memory_bytes=memory, stall_seconds=options.stall_seconds,
        temp_dirs=temp_dirs, private_tmp=private_tmp,
        max_inflated_bytes=options.max_inflated_bytes, start_method=options.start_method,
    )  # fmt: skip
    end: dict[str, str] = {}
    # A batch that is due waits while the one before it is committed, unless
    # results pile up (see Committer.due and CommitThread).
    with _Stop(options.handle_signals) as stop, CommitThread(committer, FORK_LOCK) as background:
        try:
            results = _all_results(skipped, dispatched, step, settings, stop, options.dispatch)
            for received, (item, result) in enumerate(results, 1):
                committer.add(item, result, stats.get(item.index))
                due = committer.due(len(items) - received)
                if (due and background.idle) or committer.waiting >= _BACKLOG:
                    settle(background.submit(committer.take()))
                else:
                    settle(background.ready())
            settle(background.submit(committer.take()))  # what finished before a stop is kept
            settle(background.wait())
            committer.close()
        except RunFailure as failure:
            with contextlib.suppress(RunFailure):
                settle(background.wait())  # a batch being committed is done or failed, not lost
            committer.discard()
            end["failure"] = str(failure)
            summary = tally.summary(run_id, step.command, len(items), **end)
            _finish(store, run_id, summary)
            failure.summary = summary
            raise
        if stop.signal is not None:
            end["stopped_by"] = stop.signal.name
    summary = tally.summary(run_id, step.command, len(items), **end)
    _finish(store, run_id, summary)
    return summary


def _all_results(
    skipped: list[tuple[Item, StepResult]],
    dispatched: list[Item],
    step: Step,
    settings: PoolSettings,
    stop: Callable[[], bool],
    dispatch: Dispatch,
) -> Iterator[tuple[Item, StepResult]]:
    yield from skipped
    if dispatched and not stop():
        yield from dispatch(step, dispatched, settings, stop)


def _stats(items: list[Item]) -> dict[int, os.stat_result]:
    found = {}
    for item in items:
        with contextlib.suppress(OSError):
            found[item.index] = item.path.stat()
    return found


def _split_unchanged(
    step: Step,
    store: PrivateStore,
    items: list[Item],
    stats: Mapping[int, os.stat_result],
    digest: str,
) -> tuple[list[tuple[Item, StepResult]], list[Item]]:
    """Inputs whose content, rules and key are those their existing outputs were made from."""
    if not step.incremental:
        return [], items
    states = store.source_states(step.command, (item.raw_path for item in items))
    skipped, dispatched = [], []
    for item in items:
        state = states.get(item.raw_path)
        stat = stats.get(item.index)
        if (
            stat is not None
            and state is not None
            and can_skip(state, stat, digest, step.key_fingerprint)
        ):
            skipped.append((item, StepResult(Outcome.UNCHANGED, state.sha256)))
        else:
            dispatched.append(item)
    return skipped, dispatched


def _check_key(
    step: Step, store: PrivateStore, areas: Mapping[Area, Path], *, record: bool = False
) -> None:
    """One key per OUTPUT and private location: another key would split every subject in two.

    With ``record``, an OUTPUT without a key on record gets this one's fingerprint.
    """
    key = step.key_fingerprint
    if not key:
        return
    others = store.key_fingerprints() - {key}
    if others:
        raise KeyFileError(
            f"the private location {store.root} was used with another key (fingerprint "
            f"{sorted(others)[0]}); this key is {key}. Use that key, or a new private location "
            "and OUTPUT: two keys would give one person two pseudonyms"
        )
    for area, path in areas.items():
        marker = path / STATE_DIR / "output.json"
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8")).get("key_fingerprint", "")
        except (OSError, ValueError):
            recorded = ""
        if recorded and recorded != key:
            raise KeyFileError(
                f"{_area_name(area)} {path} was written with another key (fingerprint "
                f"{recorded}); this key is {key}. Use that key, or a new {_area_name(area)}"
            )
        if not recorded and record:
            with writing(_area_name(area), path):
                from pipeline.atomic import atomic_write_text

                atomic_write_text(marker, json.dumps({"key_fingerprint": key}) + "\n")


def _fresh(folder: Path, area: str) -> Path:
    """An empty 0700 folder (what a crashed run left there is removed)."""
    with writing(area, folder.parent):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(mode=0o700, parents=True)
    return folder


def _finish(store: PrivateStore, run_id: str, summary: RunSummary) -> None:
    with contextlib.suppress(RunFailure):  # a full private store must not hide the first error
        store.finish_run(run_id, dt.datetime.now(dt.UTC).isoformat(), summary.as_dict())


def _area_name(area: Area) -> str:
    return "OUTPUT" if area is Area.RELEASE else f"--{area.value}"
