"""The workspace's own Prefect server, and the ephemeral server a killed run leaves behind."""

from __future__ import annotations

import json
import signal
import stat
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from flows.environment import OWNER_VARIABLE, owner_token, process_start
from flows.server import LOG_FILE, PID_FILE, LocalServer, LocalServerError, stop_orphans
from tests.flows.prefect_records import wait_until

if TYPE_CHECKING:
    from tests.flows.conftest import StartChild

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))

# What `mricurate ingest` does: configure, then run a flow on Prefect's
# ephemeral server (Prefect starts it as a uvicorn subprocess, which a
# SIGKILL of the run leaves behind).  A spawned process stands for what else a
# run starts, like the flow-run processes of `serve`: it is left behind too.
RUN_ON_EPHEMERAL_SERVER = """
import multiprocessing, sys, time
from pathlib import Path
from flows.environment import configure
configure(Path(sys.argv[1]))
from prefect import flow

@flow
def held() -> None:
    time.sleep(600)

multiprocessing.get_context("spawn").Process(target=time.sleep, args=(600,)).start()
held()
"""


def _get(url: str) -> Any:
    """The JSON a server answers, or None when nothing answers."""
    try:
        with _DIRECT.open(url, timeout=5) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError):
        return None


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def test_the_local_server_is_the_workspace_s_own(
    prefect_server: LocalServer, prefect_home: Path
) -> None:
    assert prefect_server.pid is not None
    recorded = json.loads((prefect_home / PID_FILE).read_text())
    assert recorded["pid"] == prefect_server.pid
    assert recorded["owner"] == owner_token()
    assert recorded["port"] == prefect_server.port
    assert stat.S_IMODE((prefect_home / PID_FILE).stat().st_mode) == 0o600
    assert stat.S_IMODE((prefect_home / LOG_FILE).stat().st_mode) == 0o600
    # The server's own environment, as it was started.
    environment = _environ(prefect_server.pid)
    assert environment["PREFECT_HOME"] == str(prefect_home)
    assert environment["PREFECT_SERVER_ANALYTICS_ENABLED"] == "false"
    assert environment["DO_NOT_TRACK"] == "1"
    assert environment[OWNER_VARIABLE] == owner_token()
    # Its owner runs: it is nobody's orphan.
    assert stop_orphans(prefect_home) == []
    assert process_start(prefect_server.pid) is not None


def test_a_second_server_of_the_workspace_is_refused(
    prefect_server: LocalServer, prefect_home: Path
) -> None:
    with pytest.raises(LocalServerError, match=f"already runs \\(pid {prefect_server.pid}"):
        LocalServer(prefect_home).start()
    assert _get(f"{prefect_server.api_url}/health") is not None


def _children(parent: int) -> dict[int, bytes]:
    """The child processes of ``parent``, with their command lines."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat_line = (entry / "stat").read_bytes()
            arguments = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat_line[stat_line.rindex(b")") + 2 :].split()[1]) == parent:
            found[int(entry.name)] = arguments
    return found


def _child_of(parent: int, argument: bytes) -> int | None:
    """The child process of ``parent`` with ``argument`` on its command line."""
    return next((pid for pid, line in _children(parent).items() if argument in line), None)


def test_stop_orphans_stops_the_ephemeral_server_of_a_killed_run(
    migrated_prefect_home: Path, start_child: StartChild
) -> None:
    # A stray address in the environment: configure() must not let the run use it.
    stray = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}
    child = start_child(RUN_ON_EPHEMERAL_SERVER, str(migrated_prefect_home), **stray)
    try:
        _orphan_and_stop(child, migrated_prefect_home)
    finally:  # a failure above must not leave a server behind
        child.kill()
        child.wait()
        stop_orphans(migrated_prefect_home)


def _orphan_and_stop(child: subprocess.Popen[bytes], home: Path) -> None:
    server = wait_until(
        lambda: _child_of(child.pid, b"prefect.server.api.server:create_app"),
        timeout=60,
        what="the run started its ephemeral server",
    )
    sleeper = _child_of(child.pid, b"multiprocessing.spawn")
    assert sleeper is not None
    # The server runs with the product's settings, and names its owner.
    environment = _environ(server)
    assert environment["PREFECT_HOME"] == str(home)
    assert environment["PREFECT_SERVER_ANALYTICS_ENABLED"].lower() == "false"  # Prefect's "False"
    assert environment["DO_NOT_TRACK"] == "1"
    assert environment[OWNER_VARIABLE] == owner_token(child.pid)
    assert "PREFECT_API_URL" not in environment  # configure() removed the stray one
    # While the run lives, its server is left alone.
    assert stop_orphans(home) == []

    left = sorted(_children(child.pid))  # the server, the sleeper, multiprocessing's tracker
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert process_start(server) is not None, "the ephemeral server outlived its run"
    assert process_start(sleeper) is not None

    assert stop_orphans(home) == left

    assert [pid for pid in left if process_start(pid) is not None] == []
    assert stop_orphans(home) == []
