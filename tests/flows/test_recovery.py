"""A flow run killed mid-task stays RUNNING; the next start marks it and its task runs Crashed."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import TYPE_CHECKING

from flows.recovery import CRASH_MESSAGE, mark_crashed
from flows.server import LocalServer
from tests.flows.prefect_records import flow_run_state, task_run_states, wait_until

if TYPE_CHECKING:
    from tests.flows.conftest import StartChild

FLOW = "mricurate-crash-probe"

# A run as `mricurate ingest` makes one: configured first, then a flow whose
# task is stopped for good halfway through (it tells the test its flow run).
HELD_RUN = f"""
import sys, time
from pathlib import Path
from flows.environment import configure
configure(Path(sys.argv[1]), api_url=sys.argv[2])
from prefect import flow, task
from prefect.runtime import flow_run

@task
def hold() -> None:
    Path(sys.argv[3]).write_text(flow_run.id)
    time.sleep(600)

@flow(name={FLOW!r})
def probe() -> None:
    hold()

probe()
"""


def test_a_killed_run_is_marked_crashed(
    prefect_server: LocalServer, prefect_home: Path, start_child: StartChild, tmp_path: Path
) -> None:
    marker = tmp_path / "flow-run-id"
    child = start_child(HELD_RUN, str(prefect_home), prefect_server.api_url, str(marker))
    flow_run = wait_until(
        lambda: marker.read_text() if marker.exists() else None,
        timeout=60,
        what="the task started",
    )
    wait_until(
        lambda: task_run_states(prefect_home, flow_run) == ["RUNNING"],
        timeout=30,
        what="the server recorded the task run RUNNING",
    )
    child.send_signal(signal.SIGKILL)
    child.wait()

    # Nothing in Prefect notices: the records still say RUNNING.
    assert flow_run_state(prefect_home, flow_run)[0] == "RUNNING"
    assert task_run_states(prefect_home, flow_run) == ["RUNNING"]
    # Runs of another workspace's tag are not this workspace's to mark.
    assert asyncio.run(mark_crashed(FLOW, tags=["another-workspace"])) == (0, 0)

    assert asyncio.run(mark_crashed(FLOW)) == (1, 1)

    assert flow_run_state(prefect_home, flow_run) == ("CRASHED", CRASH_MESSAGE)
    assert task_run_states(prefect_home, flow_run) == ["CRASHED"]
    assert asyncio.run(mark_crashed(FLOW)) == (0, 0)  # settled once
