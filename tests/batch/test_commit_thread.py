"""Batches are committed on a thread of their own while the run goes on collecting results.

A commit mostly waits (the file system's sync, SQLite's fsync, the renames);
done where the results are collected, it kept the run from handing out
inputs, and the worker idled.  The commit itself is the same (durable,
recorded, renamed: tests/batch/test_crash.py); here: results keep coming
while a batch is committed, no worker is forked while the commit thread is
inside SQLite or OpenSSL, and the last inputs are committed as they come.
"""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

import pipeline.batch.commit as commit
from pipeline.batch.pool import FORK_LOCK, PoolSettings, WorkerPool
from pipeline.batch.runner import RunOptions, local_dispatch, run_batch
from pipeline.batch.step import Area, Item, Step, StepResult
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome
from tests.batch.scripted import ScriptedStep, inputs
from tests.release import released

SYNC_SECONDS = 1.2  # longer than two inputs take: a result must arrive meanwhile


def test_results_keep_coming_while_a_batch_is_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slow sync (a busy disk) no longer stops the run from taking results meanwhile."""
    monkeypatch.setattr(commit, "COMMIT_BATCH", 4)
    syncs: list[tuple[float, float]] = []
    real_sync = commit.sync_filesystem

    def slow_sync(folder: Path) -> None:
        start = time.monotonic()
        time.sleep(SYNC_SECONDS)
        real_sync(folder)
        syncs.append((start, time.monotonic()))

    monkeypatch.setattr(commit, "sync_filesystem", slow_sync)
    arrived: list[float] = []

    def timed_dispatch(
        step: Step, items: Sequence[Item], settings: PoolSettings, stop: Callable[[], bool]
    ) -> Iterator[tuple[Item, StepResult]]:
        for answer in local_dispatch(step, items, settings, stop):
            arrived.append(time.monotonic())
            yield answer

    names = [f"slow-{i:02d}" for i in range(8)]  # half a second each: two batches
    source = inputs(tmp_path / "in", names)
    summary = run_batch(
        ScriptedStep(tmp_path / "out"), source, PrivateStore(tmp_path / "private"),
        RunOptions(jobs=1, dispatch=timed_dispatch),
    )  # fmt: skip

    assert summary.outcomes == {Outcome.WRITTEN: len(names)}
    assert len(released(tmp_path / "out")) == len(names)
    during = [t for t in arrived if any(start < t < end for start, end in syncs)]
    assert during, ("no result was taken while a batch was being synced", syncs, arrived)


def test_no_worker_is_forked_while_the_commit_thread_works(tmp_path: Path) -> None:
    """The pool forks only while FORK_LOCK is free (the commit thread holds it while committing)."""
    source = inputs(tmp_path / "in", ["a", "b"])
    settings = PoolSettings(
        jobs=1, memory_bytes=None, stall_seconds=0, temp_dirs={Area.RELEASE: tmp_path},
        private_tmp=tmp_path, max_inflated_bytes=1 << 20,
    )  # fmt: skip
    items = [Item(path, index) for index, path in enumerate(sorted(source.iterdir()))]
    answers: list[tuple[Item, StepResult]] = []
    pool = WorkerPool(ScriptedStep(tmp_path / "out"), settings)
    run = threading.Thread(target=lambda: answers.extend(pool.run(items, lambda: False)))
    with FORK_LOCK:
        run.start()
        time.sleep(0.5)
        assert not multiprocessing.active_children(), "a worker was forked under the lock"
        assert not answers
    run.join(30)
    assert [item.index for item, _ in answers] == [0, 1]


def _committer(tmp_path: Path) -> commit.Committer:
    store = PrivateStore(tmp_path / "private")
    return commit.Committer(
        store, "run", "scripted", {Area.RELEASE: tmp_path / "out"}, "d", "k", incremental=False
    )


def test_the_last_inputs_are_committed_as_they_come(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commit, "COMMIT_BATCH", 16)
    committer = _committer(tmp_path)
    item, result = Item(tmp_path / "x", 0), StepResult(Outcome.NOT_COPIED)
    assert not committer.due(remaining=0)  # nothing to commit
    committer.add(item, result, None)
    # A run of one batch commits it whole at its end.
    assert not committer.due(remaining=3)
    for _ in range(15):
        committer.add(item, result, None)
    assert committer.due(remaining=100)  # a full batch
    assert len(committer.take()) == 16
    committer.add(item, result, None)
    assert not committer.due(remaining=4)  # a quarter batch still to come
    assert committer.due(remaining=3)  # among the last quarter batch: what is there
