"""The runner with its results computed elsewhere, in chunks: the same outcomes, the same guarantees.

The cluster here is threads of this process calling the worker side
(:func:`pipeline.batch.remote.run_chunk`) as a Dask worker does; each chunk
still runs in real worker processes that really die.  ``tests/flows/
test_scale_out.py`` runs the same seam on a real Dask cluster.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pipeline.batch import remote
from pipeline.batch.remote import RemoteDispatch, chunk_size_for
from pipeline.batch.runner import RunOptions, RunSummary, run_batch
from pipeline.errors import RunFailure
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome, Reason
from tests.batch.scripted import ScriptedStep, inputs
from tests.release import released


class WorkerLost(Exception):
    """What a cluster raises for a chunk whose worker died (Dask: KilledWorker)."""


@dataclass
class ThreadChunks:
    """A :class:`~pipeline.batch.remote.ChunkCluster` of threads; ``lose`` chunks fail as lost."""

    threads: int = 2
    lose: frozenset[int] = frozenset()
    submitted: list[int] = field(default_factory=list)
    _pool: ThreadPoolExecutor = field(init=False)

    def __post_init__(self) -> None:
        self._pool = ThreadPoolExecutor(self.threads)

    @property
    def capacity(self) -> int:
        return self.threads

    def open(self, batch: str, folder: Path) -> None:
        remote.register_batch(batch, folder, slots=self.threads)

    def submit(self, batch: str, chunk: int) -> Future[int]:
        self.submitted.append(chunk)
        if chunk in self.lose:
            lost: Future[int] = Future()
            lost.set_exception(WorkerLost("tcp://10.0.0.9:4711 died holding /data/DOE^JOHN"))
            return lost
        return self._pool.submit(remote.run_chunk, batch, chunk)

    def resubmit(self, batch: str, chunk: int, late: object) -> Future[int]:
        return self.submit(batch, chunk)

    def close(self, batch: str) -> None:
        remote.forget_batch(batch)


@pytest.fixture
def cluster() -> Iterator[ThreadChunks]:
    chunks = ThreadChunks()
    yield chunks
    chunks._pool.shutdown(wait=True)


NAMES = [f"a{i:02d}" for i in range(9)] + ["kill-me"] + [f"b{i:02d}" for i in range(9)]


def _run(
    tmp_path: Path, dispatch: RemoteDispatch | None, folder: str
) -> tuple[RunSummary, PrivateStore, Path]:
    source = inputs(tmp_path / "in", NAMES)
    store = PrivateStore(tmp_path / folder / "private")
    out = tmp_path / folder / "out"
    options = RunOptions(jobs=2) if dispatch is None else RunOptions(jobs=2, dispatch=dispatch)
    return run_batch(ScriptedStep(out), source, store, options), store, out


def test_chunks_computed_elsewhere_end_as_the_local_run_a_dead_worker_process_included(
    tmp_path: Path, cluster: ThreadChunks
) -> None:
    here, _, out_here = _run(tmp_path, None, "here")
    there, store, out_there = _run(tmp_path, RemoteDispatch(cluster, chunk_size=4), "there")
    assert cluster.submitted == [0, 1, 2, 3, 4], "five chunks of at most four inputs"
    assert there.outcomes == here.outcomes == {Outcome.WRITTEN: 18, Outcome.QUARANTINED: 1}
    assert there.reasons.keys() == {Reason.WORKER_DIED}, "the input that killed its process"
    assert {p.relative_to(out_there): p.read_bytes() for p in released(out_there)} == {
        p.relative_to(out_here): p.read_bytes() for p in released(out_here)
    }
    assert not list((store.root / "tmp").rglob("*")), "no chunk file is left in private/"


def test_a_lost_chunk_fails_the_run_blames_no_input_and_keeps_what_was_committed(
    tmp_path: Path, cluster: ThreadChunks
) -> None:
    cluster.lose = frozenset({3})
    with pytest.raises(RunFailure, match="chunk 3 of 5 failed on the cluster") as caught:
        _run(tmp_path, RemoteDispatch(cluster, chunk_size=4), "there")
    assert "DOE" not in str(caught.value) and "10.0.0.9" not in str(caught.value)
    summary = caught.value.summary
    assert isinstance(summary, RunSummary) and summary.exit_status == 3
    assert not summary.reasons, "no input is blamed for a lost worker"
    # Only what came back before the lost chunk can be released (the batch not yet
    # committed is dropped, as on one machine: the next run does it again).
    out = tmp_path / "there" / "out"
    assert {p.name for p in released(out)} <= {f"{n}.out" for n in NAMES[:12]}
    assert not (out / ".mricurate" / "tmp").exists(), "no temp folder is left behind"
    again, _, _ = _run(tmp_path, RemoteDispatch(ThreadChunks(), chunk_size=4), "there")
    assert again.count(Outcome.WRITTEN) + again.count(Outcome.UNCHANGED) == 18, "nothing lost"


def test_chunks_are_of_a_size_that_repays_a_task() -> None:
    assert chunk_size_for(19, 2) == 10  # two chunks, one per worker thread
    assert chunk_size_for(2000, 2) == 250  # four per thread on a large batch
    assert chunk_size_for(100_000, 16) == remote.MAX_CHUNK
    assert chunk_size_for(1, 8) == 1
