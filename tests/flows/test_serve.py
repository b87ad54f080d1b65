"""A served deployment's scheduled runs happen, and a restart runs the backlog once."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prefect import flow, task
from prefect.runtime import flow_run as current_run
from prefect.settings import get_current_settings

from flows.serve import serve_flow
from flows.server import LocalServer
from pipeline.phi import Phi
from tests.flows.prefect_records import (
    RunRow,
    deployment_concurrency,
    deployment_runs,
    deployment_updated,
    wait_until,
)

if TYPE_CHECKING:
    from tests.flows.conftest import StartChild

DEPLOYMENT = "mricurate-every-second"
INTERVAL = 1  # seconds
RUNS_SEEN = "MRICURATE_TEST_RUNS_SEEN"  # the file each served run appends itself to
FINAL = {"COMPLETED", "CANCELLED", "FAILED", "CRASHED"}

# `mricurate serve` as it starts: configure, then serve.
SERVE = f"""
import sys
from pathlib import Path
from flows.environment import configure
configure(Path(sys.argv[1]), api_url=sys.argv[2])
from flows.serve import serve_flow
from tests.flows.test_serve import tick
serve_flow(tick, name={DEPLOYMENT!r}, parameters={{}}, interval={INTERVAL})
"""


@dataclass(frozen=True)
class Executed:
    """A run that really ran, as the run itself wrote it down."""

    flow_run: str
    start: datetime
    end: datetime
    settings: dict[str, object]


@task
def pause() -> None:
    time.sleep(0.5)  # runs due together collide: each starts a process first


@flow(name="mricurate-serve-probe")
def tick() -> None:
    """The served flow: pauses, then appends its run and its process's settings to a file.

    Prefect's own record of a run is not proof that it ran: a run that ends as
    ``serve`` stops can be recorded Cancelled after it was Completed (Prefect
    3.9's runner cancels what it still tracks when it shuts down).
    """
    started = time.time()
    pause()
    settings = get_current_settings()
    record = {
        "flow_run": current_run.id,
        "start": started,
        "end": time.time(),
        "settings": {
            "api_url": settings.api.url,
            "server_analytics": settings.server.analytics_enabled,
            "persist_by_default": settings.results.persist_by_default,
            "heartbeat": settings.flows.heartbeat_frequency,
            "do_not_track": os.environ.get("DO_NOT_TRACK"),
        },
    }
    with open(os.environ[RUNS_SEEN], "a", encoding="utf-8") as runs:
        runs.write(json.dumps(record) + "\n")


def _executed(path: Path) -> list[Executed]:
    if not path.exists():
        return []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return [
        Executed(
            flow_run=line["flow_run"],
            start=datetime.fromtimestamp(line["start"], UTC),
            end=datetime.fromtimestamp(line["end"], UTC),
            settings=line["settings"],
        )
        for line in lines
    ]


def _stop(serving: subprocess.Popen[bytes]) -> None:
    serving.send_signal(signal.SIGTERM)
    assert serving.wait(timeout=60) == 0  # serve_flow returned


def test_a_scheduled_run_happens_and_a_restart_runs_the_backlog_once(
    prefect_server: LocalServer, prefect_home: Path, start_child: StartChild, tmp_path: Path
) -> None:
    seen = tmp_path / "runs.jsonl"
    arguments = (SERVE, str(prefect_home), prefect_server.api_url)
    # Runs poll every second here (ten in the product).
    environment = {RUNS_SEEN: str(seen), "PREFECT_RUNNER_POLL_FREQUENCY": "1"}

    serving = start_child(*arguments, **environment)
    wait_until(lambda: _executed(seen), timeout=90, what="a scheduled run ran")
    _stop(serving)
    stopped = datetime.now(UTC)
    assert deployment_concurrency(prefect_home, DEPLOYMENT) == (1, "CANCEL_NEW")
    left = {run.id: run.state_type for run in deployment_runs(prefect_home, DEPLOYMENT)}
    # Serve is down; the runs already created fall due: the backlog.
    wait_until(
        lambda: (
            sum(
                left.get(run.id) == "SCHEDULED" and run.expected_start_time < datetime.now(UTC)
                for run in deployment_runs(prefect_home, DEPLOYMENT)
            )
            >= 2
        ),
        timeout=4 * INTERVAL,
        what="two runs fell due while serve was down",
    )

    serving = start_child(*arguments, **environment)

    def registered_again() -> datetime | None:
        updated = deployment_updated(prefect_home, DEPLOYMENT)
        return updated if updated is not None and updated > stopped else None

    restarted = wait_until(registered_again, timeout=60, what="serve registered the deployment")

    def backlog() -> list[RunRow]:
        return [
            run
            for run in deployment_runs(prefect_home, DEPLOYMENT)
            if left.get(run.id) == "SCHEDULED" and run.expected_start_time < restarted
        ]

    def caught_up() -> bool:
        settled = all(run.state_type in FINAL for run in backlog())
        return settled and any(run.start > restarted for run in _executed(seen))

    wait_until(caught_up, timeout=90, what="a run after the restart ran")
    _stop(serving)

    # The due runs were all taken at the first poll: one of them, or a run of the
    # next seconds fetched with them, got the deployment's one slot; every other
    # was cancelled, so the backlog ran once at most, never one run after another.
    executed = sorted(_executed(seen), key=lambda run: run.start)
    overdue = {run.id for run in backlog()}
    assert len(overdue) >= 2
    assert len([run for run in executed if run.flow_run in overdue]) <= 1
    assert {run.state_type for run in backlog()} <= {"COMPLETED", "CANCELLED"}
    assert len({run.flow_run for run in executed}) == len(executed)  # no run ran twice
    for earlier, later in itertools.pairwise(executed):
        assert earlier.end <= later.start, "two runs of the deployment overlapped"
    # What a served run's own process ran with: the product's settings, heartbeats on.
    assert executed[-1].settings == {
        "api_url": prefect_server.api_url,
        "server_analytics": False,
        "persist_by_default": False,
        "heartbeat": 180,
        "do_not_track": "1",
    }


def test_serve_takes_one_schedule_and_plain_parameters() -> None:
    with pytest.raises(ValueError, match="exactly one schedule"):
        serve_flow(tick, name="x", parameters={}, cron="0 2 * * *", interval=60)
    with pytest.raises(ValueError, match="exactly one schedule"):
        serve_flow(tick, name="x", parameters={})
    with pytest.raises(TypeError, match="'source'"):
        serve_flow(tick, name="x", parameters={"source": Phi("/incoming/DOE^JOHN")}, interval=60)  # type: ignore[dict-item]
