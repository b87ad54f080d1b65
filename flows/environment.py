"""Prefect's settings for mricurate, fixed before ``prefect`` is imported.

Prefect reads its settings from the environment once, when it is imported;
a ``PREFECT_*`` variable set afterwards is ignored by this process (it only
reaches processes started later).  So the command line calls
:func:`configure` first, and only then imports anything that imports
``prefect``.  This module therefore never imports ``prefect`` itself.

What the settings decide, and why:

- **Everything Prefect writes stays in the private location.**  Its home, its
  server's SQLite database, its logging configuration, its profiles and any
  result file live under ``private/prefect/`` (mode 0700): flow-run records are
  not PHI by design, but they are the site's operational records, and a
  ``~/.prefect`` shared by every project on the machine is no place for them.
- **Nothing phones out** (a hospital network does not): the server's analytics
  are off, which also stops its telemetry heartbeat service (in Prefect 3.9 the
  ``send_telemetry_heartbeat`` service is switched by
  ``PREFECT_SERVER_ANALYTICS_ENABLED``; there is no separate
  ``PREFECT_SERVER_SERVICES_TELEMETRY_ENABLED``), ``DO_NOT_TRACK=1`` stops the
  client's SDK analytics (which switch themselves off under CI, so CI alone
  proves nothing), the UI (which fetches its collection views from GitHub) is
  off, plugins are not loaded, a site's HTTP proxy is bypassed for the local
  server, and a Prefect Cloud URL is refused.
- **No result is persisted**: a persisted result is a base64 cloudpickle
  file of whatever a task or flow returned.  Persistence is off by default,
  and caching is off for every task, which in Prefect 3.9 also stops a task
  that asks for persistence itself (``persist_result=True``,
  ``result_storage_key``) from writing a file: with no cache key there is
  nothing to write under.  A *flow* declared ``persist_result=True`` still
  writes one; the PHI tests read them all (``tests/flows/prefect_records.py``).
- **Logs reach the API**, because our flows log only opaque keys; ``print`` is
  never forwarded, and no extra loggers are.
- **Heartbeats stay on** in the product (they let Prefect see a run that
  died); tests switch them off through ``prefect.settings.temporary_settings``
  because the setting can no longer be switched off by environment variable.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import urlsplit

from pipeline.errors import CurationError
from pipeline.keys import ensure_private_dir

DATABASE_NAME = "prefect.db"
"""The SQLite file of Prefect's server, in ``prefect_home``."""

RESULTS_FOLDER = "storage"
"""Where Prefect would write result files (none are written: persistence is off)."""

EPHEMERAL_STARTUP_SECONDS = 120
"""How long a flow waits for Prefect's ephemeral server to come up.

Prefect's default (20 s) is shorter than the first start on a new workspace,
which runs 116 database migrations (about 24 s on a 2-core machine)."""

HEARTBEAT_SECONDS = 180
"""Prefect's own default, pinned so that a site's environment cannot turn heartbeats off."""

OWNER_VARIABLE = "MRICURATE_PREFECT_OWNER"
"""Names the process that configured Prefect, as ``PID:START`` (see :func:`owner_token`).

Every process started afterwards (Prefect's ephemeral server above all)
inherits it, so :func:`flows.server.stop_orphans` can tell a server whose
owner was killed from one whose owner still runs.  It has to travel in the
environment: ``/proc/PID/environ`` shows a process's environment as it was
started, never what the process set later, so the owner's own PREFECT_HOME
is not visible there."""

# Variables not named ``PREFECT_*`` that are still part of what we set.
_NOT_PREFECT_SETTINGS = frozenset({"DO_NOT_TRACK", "NO_PROXY", "no_proxy", OWNER_VARIABLE})
_LOCAL_HOSTS = ("127.0.0.1", "localhost")


class PrefectConfigurationError(CurationError):
    """Prefect cannot be configured as asked; the message says what to change."""


def prefect_settings(
    prefect_home: Path, *, api_url: str | None = None, database_url: str | None = None
) -> dict[str, str]:
    """Every environment variable mricurate sets for Prefect.

    Parameters
    ----------
    prefect_home : Path
        Prefect's home, inside the workspace's private location (``private/prefect``).
    api_url : str, optional
        A Prefect server's API (``http://host:port/api``): the one ``serve`` starts,
        or a site's shared server.  None runs every flow on Prefect's ephemeral
        server: ``PREFECT_API_URL`` is then left out, and :func:`configure`
        removes it from the environment.  (Not set empty: Prefect 3.9 takes any
        string for a running server's address, and its events, task-run states
        among them, would go nowhere.)
    database_url : str, optional
        The database of a server started with these settings; by default a SQLite
        file in ``prefect_home``.  A shared deployment should use PostgreSQL
        (``postgresql+asyncpg://...``): Prefect's SQLite server reports
        ``database is locked`` under load (a known open Prefect issue).

    Returns
    -------
    dict[str, str]
        Variable name to value; :func:`configure` writes them into ``os.environ``,
        :class:`flows.server.LocalServer` into its server's environment.

    Raises
    ------
    PrefectConfigurationError
        ``api_url`` is not an http(s) URL, or names Prefect Cloud.
    """
    home = Path(prefect_home).absolute()
    if api_url:
        _check_api_url(api_url)
    database = database_url or f"sqlite+aiosqlite:///{home / DATABASE_NAME}"
    no_proxy = with_local_hosts(os.environ.get("NO_PROXY") or os.environ.get("no_proxy") or "")
    return {
        # -- everything Prefect writes stays under private/prefect -------------
        "PREFECT_HOME": str(home),
        "PREFECT_PROFILES_PATH": str(home / "profiles.toml"),
        "PREFECT_LOGGING_CONFIG_PATH": str(home / "logging.yml"),
        "PREFECT_SERVER_MEMO_STORE_PATH": str(home / "memo_store.toml"),
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH": str(home / RESULTS_FOLDER),
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": database,
        **({"PREFECT_API_URL": api_url} if api_url else {}),
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(EPHEMERAL_STARTUP_SECONDS),
        # -- nothing phones out ------------------------------------------------
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_UI_ENABLED": "false",
        "PREFECT_SERVER_UI_SHOW_PROMOTIONAL_CONTENT": "false",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        # A site's HTTP proxy is never asked for the local server (httpx would).
        "NO_PROXY": no_proxy,
        "no_proxy": no_proxy,
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "PREFECT_PLUGINS_ENABLED": "false",
        "PREFECT_RUNNER_AUTO_INSTALL_DEPENDENCIES": "false",
        # OS metrics of flow-run subprocesses: local, but they only fill the events table.
        "PREFECT_TELEMETRY_ENABLE_RESOURCE_METRICS": "false",
        # -- no result files, no cache keys ------------------------------------
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        "PREFECT_TASKS_DEFAULT_PERSIST_RESULT": "false",
        "PREFECT_TASKS_DEFAULT_NO_CACHE": "true",
        "PREFECT_TASKS_DISABLE_CACHING": "true",
        # -- logs: to the API, ours only, never print() ------------------------
        "PREFECT_LOGGING_TO_API_ENABLED": "true",
        "PREFECT_LOGGING_LOG_PRINTS": "false",
        "PREFECT_LOGGING_EXTRA_LOGGERS": "",
        "PREFECT_DEBUG_MODE": "false",
        # -- a run that dies is seen --------------------------------------------
        "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
    }


def configure(prefect_home: Path, *, api_url: str | None = None) -> None:
    """Write :func:`prefect_settings` into ``os.environ``; call it before importing ``prefect``.

    Creates ``prefect_home`` with mode 0700, and removes ``PREFECT_API_URL`` when
    ``api_url`` is None (the command line passes a site's ``PREFECT_API_URL`` on
    as ``api_url`` when it means to use it).  Processes this one starts later
    (Prefect's ephemeral server, the runs ``serve`` starts, Dask workers through
    Prefect's serialized settings) inherit the same settings.

    Prefect also reads ``.env``, ``prefect.toml`` and ``pyproject.toml`` in the
    current folder; what is set here wins over them, but a ``PREFECT_API_URL``
    there would still be taken when ``api_url`` is None.

    Raises
    ------
    PrefectConfigurationError
        ``prefect`` is already imported and the settings it runs with differ
        from these: Prefect would ignore them, so this process must configure
        before it imports anything that imports ``prefect``.
    """
    settings = prefect_settings(prefect_home, api_url=api_url)
    settings[OWNER_VARIABLE] = owner_token()
    previous = {name: os.environ.get(name) for name in (*settings, "PREFECT_API_URL")}
    os.environ.update(settings)
    if not api_url:  # the ephemeral server: no address of another one may linger
        os.environ.pop("PREFECT_API_URL", None)
    differing = _differing_from_imported(settings) if "prefect" in sys.modules else set()
    if differing:
        for name, value in previous.items():  # leave the environment as it was
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        raise PrefectConfigurationError(
            "prefect was imported before mricurate configured it, and runs with other "
            f"values of {', '.join(sorted(differing))}; Prefect ignores settings changed "
            "after it is imported. Call flows.environment.configure() before importing "
            "anything that imports prefect."
        )
    ensure_private_dir(Path(settings["PREFECT_HOME"]))


def with_local_hosts(no_proxy: str) -> str:
    """A ``NO_PROXY`` value that also bypasses the proxy for this machine."""
    hosts = [host.strip() for host in no_proxy.split(",") if host.strip()]
    return ",".join([*hosts, *(host for host in _LOCAL_HOSTS if host not in hosts)])


def owner_token(pid: int | None = None) -> str:
    """``PID:START`` of a process (this one by default): its ID and its start time.

    The start time (clock ticks since boot, ``/proc/PID/stat``) tells a live
    owner from a new process that was given the same ID after the owner died.
    """
    pid = os.getpid() if pid is None else pid
    started = process_start(pid)
    if started is None:
        raise ProcessLookupError(pid)
    return f"{pid}:{started}"


def process_start(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if it has ended.

    A zombie (ended, not yet reaped by its parent) counts as ended.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    if fields[0] == b"Z":
        return None
    return int(fields[19])  # field 22: starttime


def owner_alive(token: str) -> bool:
    """Whether the process an :func:`owner_token` names still runs."""
    pid, _, started = token.partition(":")
    if not (pid.isdigit() and started.isdigit()):
        return False
    return process_start(int(pid)) == int(started)


def _check_api_url(api_url: str) -> None:
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrefectConfigurationError(
            f"the Prefect API URL {api_url!r} is not an http(s) URL; give the address of a "
            "Prefect server, such as http://127.0.0.1:4200/api"
        )
    host = parts.hostname.lower()
    if host == "prefect.cloud" or host.endswith(".prefect.cloud"):
        raise PrefectConfigurationError(
            "the Prefect API URL names Prefect Cloud: mricurate keeps every Prefect "
            "record on site; run `mricurate serve` (it starts a local server) or give "
            "the URL of a Prefect server on the hospital network"
        )


def _differing_from_imported(settings: dict[str, str]) -> set[str]:
    """Names of ``settings`` whose value the already-imported Prefect does not run with."""
    # Prefect is imported already: asking it costs nothing and imports nothing new.
    from prefect.settings import Settings, get_current_settings

    wanted = Settings().to_environment_variables(exclude_unset=False)  # from os.environ now
    current = get_current_settings().to_environment_variables(exclude_unset=False)
    return {
        name
        for name in {*settings, "PREFECT_API_URL"}
        if name not in _NOT_PREFECT_SETTINGS
        and (wanted.get(name) or "") != (current.get(name) or "")
    }
