"""A Prefect server of the workspace's own, and the servers a killed run left behind.

Schedules never fire on Prefect's ephemeral server, so ``mricurate serve``
starts a real one (unless ``PREFECT_API_URL`` names a site's shared server):
``prefect server start`` bound to 127.0.0.1, without UI or analytics, its
home and SQLite database under ``private/prefect``.  It is a child process
that dies with its owner (``PR_SET_PDEATHSIG``), writes a pid file, and is
ready when its ``/api/health`` answers.

A run killed with SIGKILL cannot stop what it started: Prefect's ephemeral
server (a ``uvicorn`` subprocess) lives on, holding the database, and so do
the flow-run processes of a killed ``serve``.  :func:`stop_orphans` finds
them through ``/proc`` and stops them.

Nothing here imports ``prefect``: the command line starts the server and
configures the environment before Prefect is imported.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from flows.environment import (
    OWNER_VARIABLE,
    PrefectConfigurationError,
    owner_alive,
    owner_token,
    prefect_settings,
    process_start,
)
from pipeline.atomic import atomic_write_text
from pipeline.keys import ensure_private_dir

PID_FILE = "mricurate-server.json"
"""The running server's pid file in ``prefect_home`` (Prefect's own ``server.pid`` is left to it)."""

LOG_FILE = "server.log"
"""The server's output, in ``prefect_home``: private, like every record of Prefect's."""

STARTUP_SECONDS = 120.0
"""The first start on a new workspace runs Prefect's 116 migrations (about 24 s on 2 cores)."""

STOP_SECONDS = 10.0
"""How long a server may take to shut down after SIGTERM before it is killed."""

# Exec'd in the server's process before Prefect: the server gets SIGTERM when
# the thread that started it dies (even by SIGKILL), and never outlives it.
_DIE_WITH_OWNER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)\n"  # PR_SET_PDEATHSIG
    "if os.getppid() != int(sys.argv[1]): sys.exit(1)\n"  # the owner died before prctl
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


class LocalServerError(PrefectConfigurationError):
    """The local Prefect server cannot be started; the message says why and what to do."""


@dataclass(frozen=True)
class _Recorded:
    """What the pid file says: the server process and its owner."""

    pid: int
    started: int
    owner: str
    port: int


class LocalServer:
    """A ``prefect server start`` of this workspace, as a context manager.

    Parameters
    ----------
    prefect_home : Path
        Prefect's home in the private location; the database is created in it.
    port : int, optional
        The port on 127.0.0.1; a free one by default, chosen now so that
        :attr:`api_url` is known before the server starts (the caller
        configures ``PREFECT_API_URL`` with it before importing Prefect).
    database_url : str, optional
        PostgreSQL for a shared deployment; SQLite in ``prefect_home`` by default.
    environment : Mapping[str, str], optional
        More variables for the server's environment, over the product's
        settings (tests shorten the scheduler's loop with it).
    startup_timeout : float
        Seconds to wait for ``/api/health``.

    Notes
    -----
    Start it from the thread that lives as long as the server (the main
    thread): the server is sent SIGTERM when that thread ends.
    """

    def __init__(
        self,
        prefect_home: Path,
        port: int | None = None,
        *,
        database_url: str | None = None,
        environment: Mapping[str, str] | None = None,
        startup_timeout: float = STARTUP_SECONDS,
    ) -> None:
        self.prefect_home = Path(prefect_home).absolute()
        self.port = port if port is not None else _free_port()
        self.api_url = f"http://127.0.0.1:{self.port}/api"
        self._database_url = database_url
        self._environment = dict(environment or {})
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._ready = False

    @property
    def pid(self) -> int | None:
        """The server's process ID while it runs."""
        return self._process.pid if self._process is not None else None

    @property
    def log_path(self) -> Path:
        return self.prefect_home / LOG_FILE

    def start(self, *, wait: bool = True) -> None:
        """Start the server and return once its API answers.

        Parameters
        ----------
        wait : bool
            False returns as soon as the process runs: the caller does something
            else while the server starts (importing Prefect takes seconds too),
            then calls :meth:`wait_until_ready`.  Calling :meth:`start` again
            also waits.

        Raises
        ------
        LocalServerError
            Another live process of this workspace runs a server already, or the
            server exited or did not answer within the startup timeout (its log,
            :attr:`log_path`, says why).
        """
        if self._process is None:
            self._launch()
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self) -> None:
        """Return once the started server's API answers (see :meth:`start`)."""
        if self._process is None:
            raise LocalServerError("the local Prefect server was not started")
        if self._ready:
            return
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        self._ready = True

    def _launch(self) -> None:
        ensure_private_dir(self.prefect_home)
        recorded = _read_pid_file(self.prefect_home)
        if recorded is not None and _alive(recorded) and owner_alive(recorded.owner):
            raise LocalServerError(
                f"a Prefect server of this workspace already runs (pid {recorded.pid}, "
                f"port {recorded.port}, started by pid {recorded.owner.partition(':')[0]}): "
                "stop that `mricurate serve` first, or point PREFECT_API_URL at its server"
            )
        stop_orphans(self.prefect_home)
        environment = {
            **os.environ,
            **prefect_settings(
                self.prefect_home, api_url=self.api_url, database_url=self._database_url
            ),
            OWNER_VARIABLE: owner_token(),
            **self._environment,
        }
        command = [
            sys.executable, "-c", _DIE_WITH_OWNER, str(os.getpid()),
            "-m", "prefect", "server", "start", "--host", "127.0.0.1",
            "--port", str(self.port), "--no-ui", "--analytics-off",
        ]  # fmt: skip
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            # In prefect_home: no .env or prefect.toml of the caller's folder is read.
            self._process = subprocess.Popen(
                command,
                env=environment,
                cwd=self.prefect_home,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        finally:
            os.close(log)
        started = process_start(self._process.pid)
        # Written before the server is ready: a run killed while it starts leaves a trace.
        atomic_write_text(
            self.prefect_home / PID_FILE,
            json.dumps(
                {
                    "pid": self._process.pid,
                    "started": started or 0,
                    "owner": owner_token(),
                    "port": self.port,
                }
            ),
            mode=0o600,
        )

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after :data:`STOP_SECONDS`); idempotent."""
        process, self._process, self._ready = self._process, None, False
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        recorded = _read_pid_file(self.prefect_home)
        if recorded is not None and recorded.pid == process.pid:
            (self.prefect_home / PID_FILE).unlink(missing_ok=True)

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_until_healthy(self) -> None:
        assert self._process is not None
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            status = self._process.poll()
            if status is not None:
                raise LocalServerError(
                    f"the local Prefect server exited with status {status} while starting; "
                    f"its log {self.log_path} says why (a port in use: choose another)"
                )
            if _healthy(self.api_url):
                return
            time.sleep(0.1)
        raise LocalServerError(
            f"the local Prefect server did not answer within {self._startup_timeout:.0f} s; "
            f"see its log {self.log_path}, or give it longer"
        )


def stop_orphans(prefect_home: Path) -> list[int]:
    """Stop the processes of this workspace whose owner is gone; return their IDs.

    A process is this workspace's if its environment names ``prefect_home``
    as ``PREFECT_HOME`` and names its owner, the process that configured
    Prefect (:data:`flows.environment.OWNER_VARIABLE`, or the pid file's owner
    for our server).  It is an orphan when that owner no longer runs: above all
    Prefect's ephemeral server (``uvicorn ... prefect.server.api.server:create_app``),
    which outlives a killed ``mricurate ingest`` holding the database, and the
    flow-run processes of a killed ``mricurate serve``, which would go on
    holding the workspace lock with no server to report to (the pipeline's
    commits survive being stopped at any moment).  A process without an owner in
    its environment was started by hand and is left alone.  Each orphan gets
    SIGTERM, then SIGKILL after :data:`STOP_SECONDS`.

    Safe at any time (a process whose owner runs is never touched); call it
    before taking the workspace lock and starting a server or a flow, as
    :meth:`LocalServer.start` does.
    """
    home = Path(prefect_home).absolute()
    recorded = _read_pid_file(home)
    orphans: dict[int, int] = {}
    if recorded is not None and _alive(recorded) and not owner_alive(recorded.owner):
        orphans[recorded.pid] = recorded.started
    for pid in _processes():
        if pid == os.getpid() or pid in orphans:
            continue
        environment = _environ(pid)
        if environment is None or not _same_folder(environment.get(b"PREFECT_HOME"), home):
            continue
        owner = environment.get(OWNER_VARIABLE.encode())
        if owner is None or owner_alive(owner.decode(errors="replace")):
            continue
        started = process_start(pid)
        if started is not None:
            orphans[pid] = started
    _terminate(orphans)
    if recorded is not None and not _alive(recorded):
        (home / PID_FILE).unlink(missing_ok=True)
    return sorted(orphans)


# -- processes, through /proc ---------------------------------------------------


def _terminate(processes: Mapping[int, int]) -> None:
    """SIGTERM, wait, SIGKILL what is left, wait: none of them are our children."""
    for sig, wait in ((signal.SIGTERM, STOP_SECONDS), (signal.SIGKILL, STOP_SECONDS)):
        left = {pid: started for pid, started in processes.items() if process_start(pid) == started}
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = {pid: started for pid, started in left.items() if process_start(pid) == started}
        if not left:
            return


def _alive(recorded: _Recorded) -> bool:
    return process_start(recorded.pid) == recorded.started


def _processes() -> Iterator[int]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            yield int(entry.name)


def _environ(pid: int) -> dict[bytes, bytes] | None:
    """A process's environment as it was started, or None if it cannot be read."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:  # gone, or another user's
        return None
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    return {name: value for name, _, value in pairs}


def _same_folder(value: bytes | None, folder: Path) -> bool:
    """The same path, or another path to the same folder (through a symlink)."""
    if not value:
        return False
    named = os.path.normpath(os.fsdecode(value))
    if named == os.path.normpath(folder):
        return True  # even if the folder is gone: its server still holds its files
    try:
        return os.path.samefile(named, folder)
    except OSError:
        return False


# -- the server -------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# The server is on 127.0.0.1: never ask a proxy of the environment for it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _healthy(api_url: str) -> bool:
    try:
        with _DIRECT.open(f"{api_url}/health", timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _read_pid_file(home: Path) -> _Recorded | None:
    try:
        data = json.loads((home / PID_FILE).read_text(encoding="utf-8"))
        return _Recorded(
            pid=int(data["pid"]),
            started=int(data["started"]),
            owner=str(data["owner"]),
            port=int(data["port"]),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
