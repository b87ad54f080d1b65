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

import pytest
from distributed import Client, LocalCluster
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.ingest import ingest
from flows.scale_out import ScaleOutError, _worker_problem, scale_out
from flows.server import LocalServer
from pipeline.batch import remote
from pipeline.catalog import Catalog
from pipeline.ingest.once import ingest_once
from pipeline.workspace import Workspace, open_workspace
from tests.flows.prefect_records import phi_in_prefect, read_database, run_counts, wait_until
from tests.flows.sample import sample_workspace

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
