"""Scale-out on an existing Dask cluster: the same release, computed on the workers.

The workers are other processes, started without the server's address in
their environment (this process points Prefect at the session server through
``temporary_settings``): the address reaches them only through the settings
Prefect serializes with each task, which is what ``--dask-address`` relies on.

One module fixture runs the generated sample twice from the same start (the
same key, the same files): once without Prefect, in this machine's worker
processes, and once through the flow with its DICOM and raw inputs computed
on a 2-worker cluster; the tests compare what the two left.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from distributed import Client, LocalCluster
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.ingest import ingest
from flows.scale_out import ScaleOutError, _worker_problem, scale_out
from flows.server import LocalServer
from pipeline.batch import remote
from pipeline.batch.runner import RunOptions, RunSummary, run_batch
from pipeline.catalog import Catalog
from pipeline.catalog.errors import CatalogError
from pipeline.catalog.records import RunRecord
from pipeline.catalog.states import RunStatus
from pipeline.errors import RunFailure
from pipeline.ingest.once import ingest_once
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome
from pipeline.workspace import Workspace, open_workspace
from tests.batch.scripted import ScriptedStep, inputs
from tests.flows.prefect_records import phi_in_prefect, read_database, run_counts, wait_until
from tests.flows.sample import sample_workspace
from tests.release import released

if TYPE_CHECKING:
    from tests.flows.conftest import StartChild

STAGE_TASKS = 8  # the flow's own tasks (test_ingest counts them too)
# The sample's bad inputs and their reasons: no worker-died or stalled among them.
EXPECTED_REASONS = {"sop-class-not-allowed", "may-carry-burned-in-text", "unreadable",
                    "siemens-csa-non-image", "dicomdir-index"}  # fmt: skip


@dataclass(frozen=True)
class Compared:
    local: Workspace
    dask: Workspace
    planted: list[str]
    summary: dict[str, object]
    flow_run: str
    chunks_by_worker: dict[str, int]
    chunks_here: int
    killed: list[int]


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """An existing cluster, as a site would run one: two worker processes."""
    with LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as running:
        yield running


@pytest.fixture(scope="module")
def compared(
    tmp_path_factory: pytest.TempPathFactory,
    prefect_server: LocalServer,
    prefect_home: Path,
    cluster: LocalCluster,
) -> Compared:
    root = tmp_path_factory.mktemp("scale-out")
    local, _, planted = sample_workspace(root / "local", subjects=1, clean_pixels=False)
    shutil.copytree(local.root, root / "dask", symlinks=True)  # the same key, the same files
    dask = open_workspace(root / "dask")
    with Client(cluster) as client:  # type: ignore[no-untyped-call]
        assert set(client.run(os.environ.get, "PREFECT_API_URL").values()) == {None}
        workers = list(client.run(os.getpid).values())
        ingest_once(local, jobs=2)
        here = remote.chunks_run()
        killed: list[int] = []
        done = threading.Event()
        killer = threading.Thread(target=_kill_one_mid_chunk, args=(workers, killed, done))
        killer.start()
        try:
            state = ingest(str(dask.root), jobs=2, dask_address=cluster.scheduler_address,
                           return_state=True)  # fmt: skip
        finally:
            done.set()
            killer.join()
        by_worker = client.run(remote.chunks_run)
    summary = state.result()
    return Compared(
        local, dask, planted, summary, str(state.state_details.flow_run_id), by_worker,
        remote.chunks_run() - here, killed,
    )  # fmt: skip


def _kill_one_mid_chunk(workers: list[int], killed: list[int], done: threading.Event) -> None:
    """SIGKILL the first Dask worker seen computing a chunk (it has started a worker process)."""
    while not done.wait(0.02):
        for pid in workers:
            if _children(pid):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = stat.read_text()
            if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _catalog(workspace: Workspace) -> tuple[object, ...]:
    with Catalog.open(workspace.catalog_url) as catalog:
        items = sorted((i.sha256, i.state, i.reason) for i in catalog.items())
        outputs = sorted(
            (o.input_sha256, o.area, o.relpath, o.sha256)
            for o in catalog.outputs_of(i[0] for i in items)
        )
        release = catalog.latest_release()
        assert release is not None
        files = [(f.relpath, f.sha256, f.input_sha256, f.subject) for f in release.files]
        return items, outputs, release.version, files


def test_a_run_on_the_cluster_ends_as_the_run_on_this_machine(compared: Compared) -> None:
    """... although one of the two workers was killed while it computed a chunk."""
    assert len(compared.killed) == 1, "a worker was killed mid-chunk"
    local, dask = _catalog(compared.local), _catalog(compared.dask)
    assert local[0] == dask[0], "the same inputs in the same states, with the same reasons"
    assert local[1] == dask[1], "the same outputs, byte for byte"
    assert local[2:] == dask[2:], "the same release"
    version = local[2]
    for area in ("dicom", "raw", "fastmri", "manifests"):
        ours = sorted(p.relative_to(compared.local.release) for p in
                      (compared.local.release / str(version) / area).rglob("*"))  # fmt: skip
        theirs = sorted(p.relative_to(compared.dask.release) for p in
                        (compared.dask.release / str(version) / area).rglob("*"))  # fmt: skip
        assert ours == theirs and ours, area
        for relative in ours:
            path = compared.local.release / relative
            if path.is_file() and area != "manifests":
                assert path.read_bytes() == (compared.dask.release / relative).read_bytes()
    assert compared.summary["leak_check"]["failed"] == 0  # type: ignore[index]
    # Nothing of the batches is left behind in the private location.
    assert not list((compared.dask.private / "tmp").rglob("chunk-*"))


def test_the_chunks_ran_on_the_workers_and_landed_in_the_shared_server(
    compared: Compared, prefect_home: Path
) -> None:
    assert compared.chunks_here == 0, "no chunk ran in the flow's process"
    # The killed worker's count died with it; the survivor and its replacement did the rest.
    assert sum(compared.chunks_by_worker.values()) >= 1
    chunks = 3  # the 19 DICOM inputs in two chunks (10 + 9), the raw file in one
    wait_until(
        lambda: (
            run_counts(prefect_home, flow_run_ids=[compared.flow_run]).task_runs
            == STAGE_TASKS + chunks
        ),
        timeout=30,
        what="every task run, the workers' chunks too, recorded by the shared server",
    )
    with read_database(prefect_home) as db:
        rows = db.execute(
            "SELECT name, state_type FROM task_run WHERE flow_run_id = ? "
            "AND task_key LIKE '%process_chunk%'", (compared.flow_run,),
        ).fetchall()  # fmt: skip
    assert sorted(name for name, _ in rows) == ["chunk-0", "chunk-0", "chunk-1"], "opaque names"
    # The killed worker's chunk ran again (Dask's retry), and no input was blamed for it.
    assert {state for _, state in rows} == {"COMPLETED"}
    reasons = set(compared.summary["dicom"]["reasons"])  # type: ignore[index]
    assert reasons <= EXPECTED_REASONS, reasons - EXPECTED_REASONS


def test_prefect_keeps_no_phi_of_a_run_on_the_cluster(
    compared: Compared, prefect_home: Path
) -> None:
    from prefect.utilities.asyncutils import run_coro_as_sync

    from tests.flows.conftest import _drain  # not at the top: workers import this module

    run_coro_as_sync(_drain())
    paths = [str(p.relative_to(compared.dask.incoming)) for p in compared.dask.incoming.rglob("*")]
    assert phi_in_prefect(prefect_home, compared.planted + paths) == []


def test_the_ephemeral_server_is_refused_with_what_to_do(tmp_path: Path) -> None:
    with temporary_settings({PREFECT_API_URL: None}):  # noqa: SIM117
        with pytest.raises(ScaleOutError, match=r"ephemeral server.*mricurate serve"):
            with scale_out("tcp://127.0.0.1:1", tmp_path):
                pass


def test_a_worker_that_cannot_see_the_workspace_says_so(tmp_path: Path) -> None:
    problem = _worker_problem("0123", str(tmp_path / "elsewhere"), "http://127.0.0.1:1/api")
    assert "not visible here at the same path" in problem
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "visible").write_bytes(b"another")
    assert "another copy" in _worker_problem("0123", str(tmp_path / "copy"), "")


# -- A worker that hangs: the chunk's deadline ---------------------------------------

NAMES_HUNG = ["a0", "a1"]  # one chunk: its first try hangs, its second must end in time


def _run_hanging(
    tmp_path: Path, cluster: LocalCluster, hang: str, deadline: float
) -> tuple[RunSummary, dict[str, int], Path]:
    """A batch of one chunk on the cluster, its inputs hanging in one worker or all.

    Returns the summary, the chunks each worker answered meanwhile, and the output folder.
    """
    source = inputs(tmp_path / "in", NAMES_HUNG)
    hang_folder = tmp_path / "hang"
    hang_folder.mkdir()
    (hang_folder / hang).touch()
    store = PrivateStore(tmp_path / "private")
    out = tmp_path / "out"
    step = ScriptedStep(out, hang_in=str(hang_folder))
    with Client(cluster) as client:  # type: ignore[no-untyped-call]
        before = client.run(remote.chunks_run)
        try:
            with scale_out(cluster.scheduler_address, tmp_path / "staging",
                           deadline_seconds=deadline) as dispatch:  # fmt: skip
                assert dispatch is not None
                options = RunOptions(jobs=1, dispatch=dispatch)
                summary = run_batch(step, source, store, options)
            answered = {w: n - before.get(w, 0) for w, n in client.run(remote.chunks_run).items()}
            return summary, answered, out
        finally:
            shutil.rmtree(hang_folder)  # the hung tries go on, and find their batch gone
            wait_until(lambda: not any(client.processing().values()), timeout=30,
                       what="the hung workers are free again")  # fmt: skip


def test_a_chunk_whose_worker_hangs_is_sent_once_more_elsewhere(
    tmp_path: Path, prefect_server: LocalServer, cluster: LocalCluster
) -> None:
    """The deadline is a real wait: the first worker really sleeps in the step, unmocked."""
    summary, answered, out = _run_hanging(tmp_path, cluster, "one", deadline=4.0)
    assert summary.outcomes == {Outcome.WRITTEN: 2}, "every input done, none blamed"
    assert not summary.reasons
    assert sorted(answered.values()) == [0, 1], "answered by the other worker, once"
    assert {p.name for p in released(out)} == {f"{n}.out" for n in NAMES_HUNG}


def test_a_chunk_late_twice_fails_the_run_and_blames_no_input(
    tmp_path: Path, prefect_server: LocalServer, cluster: LocalCluster
) -> None:
    with pytest.raises(
        RunFailure, match=r"chunk 0 of 1 did not finish within 1 s, twice"
    ) as caught:
        _run_hanging(tmp_path, cluster, "all", deadline=1.0)
    message = str(caught.value)
    assert "No input is blamed" in message and "chunk_deadline_seconds" in message
    summary = caught.value.summary
    assert isinstance(summary, RunSummary) and not summary.reasons
    assert not released(tmp_path / "out"), "nothing of the chunk was committed"


# -- `mricurate serve --dask-address`, end to end ------------------------------------

SERVE_CLI = "import sys\nfrom mricurate.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
SCHEDULER_EVERY_SECOND = {
    "PYTHONUNBUFFERED": "1",  # its log, as it goes
    "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_RECENT_DEPLOYMENTS_LOOP_SECONDS": "1",
}


def _first_run(workspace: Workspace) -> RunRecord | None:
    with Catalog.open(workspace.catalog_url) as catalog:
        try:
            run = catalog.run(1)
        except CatalogError:
            return None
    return run if run.status is RunStatus.COMPLETED else None


def test_serve_with_a_dask_address_runs_its_schedule_on_the_cluster(
    tmp_path: Path, migrated_prefect_home: Path, start_child: StartChild
) -> None:
    """The CLI as a site runs it: its own local Prefect server, a schedule, the cluster's workers.

    A cluster of its own: on the module's cluster, which had reported to the
    session's server, the chunks' task runs did not reach serve's server (most
    likely a worker process keeps the events client of the first server it
    reported to; not confirmed).  A site's workers serve one server.  One
    worker is enough here: the module's tests spread chunks over two.
    """
    workspace, _, _ = sample_workspace(tmp_path / "ws", subjects=1, clean_pixels=False)
    with (workspace.root / "mricurate.toml").open("a") as config:
        config.write("\n[deface]\nenabled = false\n")  # it runs in the flow's process anyway
    workspace.prefect_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copy2(migrated_prefect_home / "prefect.db", workspace.prefect_home / "prefect.db")
    with (
        LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,  # type: ignore[no-untyped-call]
    ):
        before = sum(client.run(remote.chunks_run).values())
        serving = start_child(
            SERVE_CLI, "serve", "--workspace", str(workspace.root),
            "--dask-address", cluster.scheduler_address, "--interval", "2",
            **SCHEDULER_EVERY_SECOND,
        )  # fmt: skip
        run = wait_until(lambda: _first_run(workspace), timeout=300, what="a scheduled run ended")
        chunks = sum(client.run(remote.chunks_run).values()) - before
        assert chunks >= 2, "the DICOM and the raw inputs were computed on the workers"
        # The workers report their task runs to serve's own server (through its events: a lag).
        names = wait_until(
            lambda: _chunk_runs(workspace, chunks), timeout=60,
            what="the chunks' task runs in serve's server",
        )  # fmt: skip
        # Stopping serve is start_child's (test_serve proves it stops cleanly): the next
        # run, two seconds on, may be going, and its end is not this test's concern.
        serving.terminate()
    summary = run.summary
    assert summary is not None and summary["release"]["files"] > 0  # type: ignore[index]
    assert all(name.startswith("chunk-") for name in names), "opaque names"


def _chunk_runs(workspace: Workspace, chunks: int) -> list[str]:
    """The completed chunk task runs of served runs in serve's server, once there are ``chunks``."""
    with read_database(workspace.prefect_home) as db:
        rows = db.execute(
            "SELECT task_run.name FROM task_run JOIN flow_run"
            " ON flow_run.id = task_run.flow_run_id WHERE flow_run.deployment_id IS NOT NULL"
            " AND task_run.task_key LIKE '%process_chunk%' AND task_run.state_type = 'COMPLETED'"
        ).fetchall()  # fmt: skip
    return [name for (name,) in rows] if len(rows) >= chunks else []
