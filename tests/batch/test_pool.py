"""Worker processes that really die, stall and run out of memory cost only the input they held."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from pipeline.batch.pool import MAX_CONSECUTIVE_DEATHS
from pipeline.batch.runner import RunOptions, RunSummary, run_batch
from pipeline.batch.step import WorkerEnv
from pipeline.errors import RunFailure, StorageError, WorkersKeepDying
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome, Reason
from tests.batch.scripted import ScriptedStep, inputs
from tests.release import released


def run(
    tmp_path: Path, names: list[str], *, jobs: int = 2, **options: object
) -> tuple[RunSummary, PrivateStore, Path]:
    source = inputs(tmp_path / "in", names)
    store = PrivateStore(tmp_path / "private")
    out = tmp_path / "out"
    summary = run_batch(
        ScriptedStep(out),
        source,
        store,
        RunOptions(jobs=jobs, **options),  # type: ignore[arg-type]
    )
    return summary, store, out


def rows(store: PrivateStore, summary: RunSummary) -> dict[str, tuple[str, str, str]]:
    return {
        Path(str(r["input_path"])).name: (str(r["outcome"]), str(r["reason"]), str(r["detail"]))
        for r in store.inputs_for(summary.run_id)
    }


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_killed_worker_costs_only_its_input(tmp_path: Path, jobs: int) -> None:
    names = [f"a{i:02d}" for i in range(20)] + ["kill-me"] + [f"b{i:02d}" for i in range(20)]
    summary, store, out = run(tmp_path, names, jobs=jobs)
    assert summary.outcomes == {Outcome.WRITTEN: 40, Outcome.QUARANTINED: 1}
    assert list(summary.reasons) == [Reason.WORKER_DIED]
    outcome, reason, detail = rows(store, summary)["kill-me"]
    assert (outcome, reason) == ("quarantined", "worker-died")
    assert "SIGKILL" in detail and "OOM" in detail
    assert {p.name for p in released(out)} == {f"{n}.out" for n in names if n != "kill-me"}
    # The dead input is kept privately with its reason, named by its content hash.
    (key,) = summary.reasons[Reason.WORKER_DIED]
    assert list((store.root / "quarantine").rglob(f"{key}*.json"))


def test_a_segfault_and_an_exit_are_deaths_with_their_cause(tmp_path: Path) -> None:
    summary, store, _ = run(tmp_path, ["a", "segv-x", "b", "exit-y", "c"])
    found = rows(store, summary)
    assert found["segv-x"][:2] == ("quarantined", "worker-died") and "SIGSEGV" in found["segv-x"][2]
    assert (
        found["exit-y"][:2] == ("quarantined", "worker-died")
        and "exit status 5" in found["exit-y"][2]
    )
    assert summary.count(Outcome.WRITTEN) == 3


def test_a_stalled_input_is_stopped_and_the_run_ends(tmp_path: Path) -> None:
    started = time.monotonic()
    summary, store, _ = run(tmp_path, ["a", "stall-x", "slow-b", "c"], stall_seconds=1.0)
    assert time.monotonic() - started < 20  # not the minute the stall would take
    found = rows(store, summary)
    assert found["stall-x"][:2] == ("quarantined", "stalled")
    # An input that is slow but makes progress is not a stall.
    assert found["slow-b"][0] == "written"
    assert summary.count(Outcome.WRITTEN) == 3


def test_an_input_past_the_memory_ceiling_is_too_large(tmp_path: Path) -> None:
    summary, store, _ = run(tmp_path, ["a", "memory-x", "b"], memory_bytes=2 << 30)
    assert rows(store, summary)["memory-x"][:2] == ("quarantined", "too-large")
    assert summary.count(Outcome.WRITTEN) == 2


def test_workers_that_keep_dying_fail_the_run_without_blaming_the_inputs(tmp_path: Path) -> None:
    names = [f"kill-{i}" for i in range(MAX_CONSECUTIVE_DEATHS + 3)]
    with pytest.raises(WorkersKeepDying, match="the machine is failing") as caught:
        run(tmp_path, names, jobs=1)
    summary = caught.value.summary
    assert isinstance(summary, RunSummary) and summary.exit_status == 3
    assert not released(tmp_path / "out")


def test_our_own_failure_in_a_worker_stops_the_run_and_blames_no_input(tmp_path: Path) -> None:
    names = [f"a{i:02d}" for i in range(10)] + ["disk-full"] + [f"b{i:02d}" for i in range(10)]
    with pytest.raises(StorageError, match="free space there") as caught:
        run(tmp_path, names, jobs=1)
    summary = caught.value.summary
    assert isinstance(summary, RunSummary) and not summary.reasons
    store = PrivateStore(tmp_path / "private")
    with sqlite3.connect(store.db_path) as db:
        reasons = [r[0] for r in db.execute("SELECT reason FROM inputs WHERE reason != ''")]
    assert reasons == []
    assert not (store.root / "quarantine").exists()
    assert not list((tmp_path / "out" / ".mricurate" / "tmp").glob("*"))
    # What was committed before the failure is released with its records.
    for path in released(tmp_path / "out"):
        assert path.name.startswith("a")


class BrokenSetup(ScriptedStep):
    def setup(self, env: WorkerEnv) -> None:
        raise ImportError("the OCR library is missing")


def test_a_worker_that_cannot_start_fails_the_run_without_blaming_an_input(tmp_path: Path) -> None:
    source = inputs(tmp_path / "in", ["a", "b", "c"])
    store = PrivateStore(tmp_path / "private")
    with pytest.raises(RunFailure, match="a worker could not start") as caught:
        run_batch(BrokenSetup(tmp_path / "out"), source, store, RunOptions(jobs=2))
    summary = caught.value.summary
    assert isinstance(summary, RunSummary) and not summary.reasons and not summary.outcomes
    assert not (store.root / "quarantine").exists()
