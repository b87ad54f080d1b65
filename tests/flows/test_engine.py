"""What a flow run costs beyond its tasks (flows.engine): the cuts change nothing a run records."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from prefect import flow_engine
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from flows.engine import plain_flow, quick_heartbeat_exit
from flows.server import LocalServer
from tests.flows.conftest import child_environment

SERIALIZE = """
import json, sys
from pathlib import Path
from flows.environment import configure
configure(Path(sys.argv[1]))
from flows.ingest import ingest
plain = ingest.serialize_parameters({"workspace": "/site/w", "jobs": 2, "dask_address": ""})
loaded = "fastapi.encoders" in sys.modules
other = ingest.serialize_parameters({"workspace": Path("/site/w"), "jobs": 2})
print(json.dumps([plain, loaded, other, "fastapi.encoders" in sys.modules]))
"""


def test_plain_parameters_are_recorded_as_they_are_and_others_as_prefect_records_them(
    tmp_path: Path,
) -> None:
    # In a new process: this one has FastAPI loaded by other tests.
    out = subprocess.run(
        [sys.executable, "-c", SERIALIZE, str(tmp_path / "prefect")],
        env=child_environment(), capture_output=True, text=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    import json

    plain, loaded, other, loaded_after = json.loads(out.strip().splitlines()[-1])
    assert plain == {"workspace": "/site/w", "jobs": 2, "dask_address": ""}
    assert not loaded, "plain parameters imported FastAPI's encoder"
    assert other == {"workspace": "/site/w", "jobs": 2}  # a Path: Prefect's encoder, as before
    assert loaded_after


def test_the_heartbeat_patch_applies_to_this_prefect_and_once() -> None:
    assert quick_heartbeat_exit()
    patched = flow_engine._send_heartbeats
    assert quick_heartbeat_exit()
    assert flow_engine._send_heartbeats is patched


def test_a_run_ends_without_waiting_for_the_heartbeat_thread_which_stops_by_itself(
    prefect_server: LocalServer,
) -> None:
    assert quick_heartbeat_exit()
    started: list[threading.Thread] = []
    before: set[threading.Thread] = set()

    @plain_flow(name="mricurate-heartbeat-probe", persist_result=False)
    def probe() -> None:
        started.extend(t for t in threading.enumerate() if t not in before)

    # A first run (heartbeats off) starts this process's API client and
    # events worker, so that the heartbeat below is sent at once: a first
    # send that waits for a connection would outlast Prefect's own join too.
    probe()
    before.update(threading.enumerate())
    started.clear()
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        probe()
    alive_at_return = [t for t in started if t.is_alive()]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and all(t.is_alive() for t in alive_at_return):
        time.sleep(0.05)
    # Prefect's own exit joins the heartbeat thread, so it never outlives the
    # run; here it does, briefly, and ends at its next one-second check.
    ended = [t for t in alive_at_return if not t.is_alive()]
    assert ended, "no thread of the run was left to stop by itself: the run waited for it"
