"""Scale-out on an existing Dask cluster: the task runs land in the shared Prefect server.

The workers are other processes, started without the server's address in
their environment (this process points Prefect at the session server through
``temporary_settings``): the address reaches them only through the settings
Prefect serializes with each task, which is what ``--dask-address`` relies on.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from distributed import Client, LocalCluster
from prefect import flow, task
from prefect.settings import get_current_settings
from prefect_dask.task_runners import DaskTaskRunner

from flows.server import LocalServer
from tests.flows.prefect_records import RunCounts, run_counts, wait_until

FLOW = "mricurate-scale-out-probe"
BATCHES = 4


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """An existing cluster, as a site would run one: two worker processes."""
    with LocalCluster(  # type: ignore[no-untyped-call]  # distributed is untyped
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as running:
        yield running


@task
def where(batch: int) -> tuple[int, str | None]:
    """The process a batch ran in, and the API address it reported to."""
    return os.getpid(), get_current_settings().api.url


@flow(name=FLOW)
def spread() -> list[tuple[int, str | None]]:
    futures = [where.submit(batch) for batch in range(BATCHES)]
    return [future.result() for future in futures]


def _environment_api_url() -> str | None:
    return os.environ.get("PREFECT_API_URL")


def test_task_runs_on_dask_workers_land_in_the_shared_server(
    prefect_server: LocalServer, prefect_home: Path, cluster: LocalCluster
) -> None:
    with Client(cluster) as client:  # type: ignore[no-untyped-call]
        workers = set(client.run(os.getpid).values())
        assert set(client.run(_environment_api_url).values()) == {None}
    runner = DaskTaskRunner(address=cluster.scheduler_address)
    on_cluster = spread.with_options(task_runner=runner)  # type: ignore[arg-type]  # its futures' type

    state = on_cluster(return_state=True)

    ran = state.result()
    assert {pid for pid, _ in ran} <= workers
    assert os.getpid() not in workers
    assert {url for _, url in ran} == {prefect_server.api_url}
    flow_run = str(state.state_details.flow_run_id)
    wait_until(
        lambda: run_counts(prefect_home, FLOW, flow_run_ids=[flow_run]) == RunCounts(1, BATCHES),
        timeout=30,
        what="every task run recorded by the shared server",
    )
