"""Scale-out: the per-input work of the DICOM and raw stages as Prefect tasks on a Dask cluster.

``mricurate ingest --dask-address tcp://HOST:PORT`` (or ``[ingest]
dask_address``) keeps everything that must happen once in the flow's
process (the workspace lock, the catalog, the runner's commit: renames,
link rows, records, duplicates and conflicts, quarantine) and sends only
the computing of results to the cluster, in chunks of inputs: one Prefect
task run ``process-chunk`` per chunk, run by prefect-dask's
:class:`~prefect_dask.DaskTaskRunner` on the workers
(:class:`pipeline.batch.remote.RemoteDispatch` is the seam).

What the cluster needs:

- **A shared Prefect server.**  The workers report their task runs to the API
  the flow runs against; Prefect serializes its settings with each task, so
  ``PREFECT_API_URL`` reaches them without being in their environment.  The
  ephemeral server of a plain ``mricurate ingest`` lives inside the flow's
  process and dies with it: it is refused, with what to do instead.
- **The workspace at the same path on every worker** (a shared file system):
  workers read the inputs and the key and write their candidates into the
  staging area's temp folders, which the flow's process then renames.  Every
  worker is checked before the first stage, and a worker that joins later
  checks itself when told of a batch.
- **mricurate installed on the workers**, the same version as the flow's.

What crosses into Prefect and Dask is opaque: a task's parameters are a
batch token (random) and a chunk number, its name is ``chunk-N``, its result
the number of inputs it did; paths, the key and the results travel as 0600
files in ``private/`` (:mod:`pipeline.batch.remote`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.context import TaskRunContext
from prefect.settings import get_current_settings
from prefect_dask import DaskTaskRunner
from prefect_dask.task_runners import PrefectDaskFuture

from pipeline.atomic import atomic_write_bytes
from pipeline.batch.remote import (
    DEFAULT_DEADLINE_SECONDS,
    NoOtherWorker,
    RemoteDispatch,
    UnknownBatch,
    forget_batch,
    register_batch,
    run_chunk,
    visibility_problem,
)
from pipeline.errors import CurationError, RunFailure

CONNECT_SECONDS = 30
"""How long the flow waits for the Dask scheduler to answer."""


class ScaleOutError(CurationError):
    """The cluster cannot be used as asked; the message says what to change (no PHI)."""


@task(name="process-chunk", task_run_name="chunk-{chunk}", cache_policy=NO_CACHE,
      persist_result=False)  # fmt: skip
def process_chunk(batch: str, chunk: int) -> int:
    """Compute one chunk of a batch on this worker (its answer goes to the private location)."""
    try:
        return run_chunk(batch, chunk)
    except UnknownBatch:
        raise  # its message is ours, PHI-free, and says what is wrong
    except Exception as exc:
        # run_chunk answers every failure it can through the private location;
        # what is left (the folder gone, a full disk) is named by its type only.
        raise RuntimeError(f"chunk {chunk} failed on this worker ({type(exc).__name__})") from None


class _BatchFolder(WorkerPlugin):  # type: ignore[misc]  # distributed is untyped
    """Tells every worker, also one that joins later, where a batch's files are."""

    def __init__(self, batch: str, folder: str) -> None:
        self.batch = batch
        self.folder = folder

    def setup(self, worker: Any) -> None:
        # Never raise: a plugin a killed flow left registered would fail every
        # worker that joins later.  A worker that cannot see the batch refuses
        # its chunks instead (UnknownBatch, a run failure that says why).
        with contextlib.suppress(UnknownBatch):
            register_batch(self.batch, Path(self.folder), slots=worker.state.nthreads)

    def teardown(self, worker: Any) -> None:
        forget_batch(self.batch)


class DaskChunks:
    """A :class:`~pipeline.batch.remote.ChunkCluster` of Prefect tasks on a :class:`DaskTaskRunner`."""

    def __init__(self, runner: DaskTaskRunner) -> None:
        self._runner = runner

    @property
    def capacity(self) -> int:
        return max(1, sum(self._runner.client.nthreads().values()))

    def open(self, batch: str, folder: Path) -> None:
        try:
            self._runner.client.register_plugin(_BatchFolder(batch, str(folder)), name=_name(batch))
        except Exception as exc:
            raise RunFailure(
                f"the Dask cluster did not take the batch ({type(exc).__name__}); check that "
                "its scheduler and workers still run, and run again"
            ) from None

    def submit(self, batch: str, chunk: int) -> _Future:
        return self._submit(batch, chunk, workers=None)

    def resubmit(self, batch: str, chunk: int, late: object) -> _Future:
        """The chunk again, on any worker but the one that holds ``late`` (it hangs)."""
        client = self._runner.client
        key = late._future.wrapped_future.key if isinstance(late, _Future) else None
        holders = {worker for worker, keys in client.processing().items() if key in keys}
        others = sorted(set(client.nthreads()) - holders)
        if not others:
            raise NoOtherWorker(f"chunk {chunk}")
        return self._submit(batch, chunk, workers=others)

    def _submit(self, batch: str, chunk: int, workers: list[str] | None) -> _Future:
        # Prefect ships the submitting task run's context, its parameters
        # included, with every task it submits; the stage's parameter is the
        # open run (the key, the catalog).  The chunk is submitted as the flow's
        # own child instead, and carries only the flow run's context.
        outside = TaskRunContext.__var__.set(None)  # type: ignore[arg-type]
        try:
            parameters = {"batch": batch, "chunk": chunk}
            if workers is None:
                future = self._runner.submit(process_chunk, parameters)
            else:  # DaskTaskRunner.submit has no worker restriction: its client has
                wrapped = self._runner.client.submit(
                    process_chunk, parameters=parameters, return_type="state",
                    workers=workers, allow_other_workers=False,
                )  # fmt: skip
                future = PrefectDaskFuture(wrapped_future=wrapped, task_run_id=wrapped.task_run_id)
        finally:
            TaskRunContext.__var__.reset(outside)
        return _Future(future)

    def close(self, batch: str) -> None:
        with contextlib.suppress(Exception):  # the cluster may be gone: its workers with it
            self._runner.client.unregister_worker_plugin(_name(batch))


class _Future:
    def __init__(self, future: Any) -> None:
        self._future = future

    def result(self, timeout: float | None = None) -> object:
        return self._future.result(timeout=timeout)

    def cancel(self) -> None:
        self._future.wrapped_future.cancel()


def _name(batch: str) -> str:
    return f"mricurate-batch-{batch}"


@contextlib.contextmanager
def scale_out(
    address: str, staging: Path, *, deadline_seconds: float = DEFAULT_DEADLINE_SECONDS
) -> Iterator[RemoteDispatch | None]:
    """The dispatch of the run's DICOM and raw stages: on the cluster at ``address``, or None.

    A chunk later than ``deadline_seconds`` (``[ingest] chunk_deadline_seconds``)
    is sent once more to another worker; a second late one fails the run.

    Raises
    ------
    ScaleOutError
        The flow runs on Prefect's ephemeral server, the scheduler does not
        answer, it has no workers, or a worker cannot see the workspace or
        reach the Prefect API.
    """
    if not address:
        yield None
        return
    api_url = get_current_settings().api.url
    if not api_url:
        raise ScaleOutError(
            "scale-out on a Dask cluster needs a shared Prefect server, and this run is on "
            "Prefect's ephemeral server (it lives in this process; the workers cannot report "
            "to it): run `mricurate serve --dask-address ...` (it starts a local server), or "
            "set [prefect] api_url in mricurate.toml to a Prefect server the workers can reach"
        )
    with DaskTaskRunner(address=address, client_kwargs={"timeout": CONNECT_SECONDS}) as runner:
        try:
            client = runner.client
        except (OSError, TimeoutError) as exc:
            raise ScaleOutError(
                f"the Dask scheduler at {address} does not answer ({type(exc).__name__}): start "
                "it, or check --dask-address / [ingest] dask_address"
            ) from None
        check_workers(client, address, staging, str(api_url))
        yield RemoteDispatch(DaskChunks(runner), deadline_seconds=deadline_seconds)


def check_workers(client: Any, address: str, staging: Path, api_url: str) -> None:
    """Every worker sees the staging folder at the same path and reaches the Prefect API."""
    token = uuid.uuid4().hex
    folder = staging / f".mricurate-check-{token}"
    folder.mkdir(mode=0o700, parents=True)
    try:
        atomic_write_bytes(folder / "visible", token.encode(), mode=0o600)
        answers = client.run(_worker_problem, token, str(folder), api_url, on_error="return")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not answers:
        raise ScaleOutError(
            f"the Dask cluster at {address} has no workers: start some (dask worker {address})"
        )
    problems = {
        worker: (
            answer if isinstance(answer, str) else f"the check failed ({type(answer).__name__})"
        )
        for worker, answer in sorted(answers.items())
        if answer
    }
    if problems:
        listed = "; ".join(f"worker {worker}: {problem}" for worker, problem in problems.items())
        raise ScaleOutError(
            f"{len(problems)} of {len(answers)} Dask worker(s) at {address} cannot work on this "
            f"workspace: {listed}"
        )


def _worker_problem(token: str, folder: str, api_url: str) -> str:
    """On a worker: why it cannot take chunks, or '' (PHI-free: the workspace is a site path)."""
    problem = visibility_problem(token, Path(folder))
    if problem:
        return problem.replace("private location", "staging folder (private/staging)")
    try:
        with urllib.request.urlopen(api_url.rstrip("/") + "/health", timeout=10) as answer:
            if answer.status != 200:
                return f"the Prefect API at {api_url} answers {answer.status}"
    except (OSError, urllib.error.URLError) as exc:
        return (
            f"cannot reach the Prefect API at {api_url} ({type(exc).__name__}): the workers must "
            "reach the server the flow uses ([prefect] api_url, or `serve` on a host they reach)"
        )
    if not os.access(folder, os.W_OK):
        return "the staging folder is read-only here: workers write their candidates into it"
    return ""
