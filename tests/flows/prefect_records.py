"""What Prefect keeps of our runs, read the way someone with the disk would read it.

Prefect stores run and task names, parameters, state messages, tracebacks,
logs, events and artifacts in its server's SQLite database, and, when a task
persists its result, a base64 cloudpickle file under the local storage path.
:func:`prefect_text` gathers all of it as bytes so that a test can assert no
planted value appears anywhere; :func:`run_counts` says how many runs were
recorded, which a PHI test checks first (the ephemeral server drops most
task-run records when its process exits, and an empty database leaks nothing).

Everything is read through ``sqlite3`` and the file system, never through
Prefect: the question is what is on disk, not what Prefect's API shows.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import pickletools
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

DATABASE = "prefect.db"  # flows.environment.DATABASE_NAME


@dataclass(frozen=True)
class RunCounts:
    """How many flow runs and task runs Prefect recorded."""

    flow_runs: int
    task_runs: int


@dataclass(frozen=True)
class RunRow:
    """One flow run of a deployment, as its row says."""

    id: str
    name: str
    state_type: str
    expected_start_time: datetime
    start_time: datetime | None
    end_time: datetime | None


def prefect_text(prefect_home: Path) -> bytes:
    """Every byte Prefect keeps under ``prefect_home``, with encoded values decoded too.

    - each SQLite database: every cell of every table, JSON cells again with
      their ``\\uXXXX`` escapes decoded (``Müller`` is stored as ``M\\u00fcller``),
      then the raw bytes of the database, its ``-wal`` and ``-journal`` files
      (deleted rows and old versions of rows live on there);
    - every other file (logs, result files, memo store) as it is, a base64
      content decoded, and the strings and bytes inside a pickle listed;
    - every file's and folder's name.
    """
    parts: list[bytes] = []
    home = Path(prefect_home)
    for path in sorted(home.rglob("*")):
        parts.append(bytes(path.relative_to(home)))  # a result key can name a file
        if not path.is_file():
            continue
        if path.name.endswith((".db", ".sqlite")):
            parts.append(_database_text(path))
        parts.append(path.read_bytes())
        parts.extend(_decoded(path.read_bytes()))
    return b"\n".join(parts)


def phi_in_prefect(prefect_home: Path, values: list[str]) -> list[str]:
    """Which of ``values`` (planted PHI, input paths) Prefect keeps anywhere, case-blind.

    Values shorter than 5 characters are left out (they would match anything);
    a number counts where it stands alone: 31066 inside a timestamp is not a
    serial, nor is 41710 after a colon or a hyphen, where Prefect records this
    machine's ports and process IDs (``127.0.0.1:41710``, ``host:pid``,
    ``host-pid`` consumer names: five digits, like the sample's serials).
    """
    recorded = prefect_text(prefect_home).upper()
    needles = {v.upper().encode() for v in values if len(v) >= 5}
    return sorted(
        n.decode()
        for n in needles
        if (re.search(rb"(?<![0-9:-])" + re.escape(n) + rb"(?![0-9])", recorded) if n.isdigit()
            else n in recorded)
    )  # fmt: skip


def run_counts(
    prefect_home: Path, flow_name: str | None = None, *, flow_run_ids: list[str] | None = None
) -> RunCounts:
    """The flow runs (of ``flow_name``, or with these IDs) and their task runs recorded."""
    where, arguments = _flow_run_filter(flow_name, flow_run_ids)
    with read_database(prefect_home) as db:
        (flows,) = db.execute(
            f"SELECT count(*) FROM flow_run JOIN flow ON flow.id = flow_run.flow_id WHERE {where}",
            arguments,
        ).fetchone()
        (tasks,) = db.execute(
            "SELECT count(*) FROM task_run WHERE flow_run_id IN (SELECT flow_run.id FROM "
            f"flow_run JOIN flow ON flow.id = flow_run.flow_id WHERE {where})",
            arguments,
        ).fetchone()
    return RunCounts(flow_runs=int(flows), task_runs=int(tasks))


def task_run_states(prefect_home: Path, flow_run_id: str) -> list[str]:
    """The state types of one flow run's task runs, in the order they were created."""
    with read_database(prefect_home) as db:
        rows = db.execute(
            "SELECT state_type FROM task_run WHERE flow_run_id = ? ORDER BY created",
            (flow_run_id,),
        ).fetchall()
    return [str(state) for (state,) in rows]


def flow_run_state(prefect_home: Path, flow_run_id: str) -> tuple[str, str | None]:
    """A flow run's state type and the message of its current state."""
    with read_database(prefect_home) as db:
        row = db.execute(
            "SELECT flow_run.state_type, flow_run_state.message FROM flow_run "
            "LEFT JOIN flow_run_state ON flow_run_state.id = flow_run.state_id "
            "WHERE flow_run.id = ?",
            (flow_run_id,),
        ).fetchone()
    if row is None:
        raise LookupError(f"no flow run {flow_run_id}")
    return str(row[0]), row[1]


def deployment_runs(prefect_home: Path, deployment: str) -> list[RunRow]:
    """Every flow run of a deployment, by scheduled time."""
    with read_database(prefect_home) as db:
        rows = db.execute(
            "SELECT flow_run.id, flow_run.name, flow_run.state_type, "
            "flow_run.expected_start_time, flow_run.start_time, flow_run.end_time "
            "FROM flow_run JOIN deployment ON deployment.id = flow_run.deployment_id "
            "WHERE deployment.name = ? ORDER BY flow_run.expected_start_time",
            (deployment,),
        ).fetchall()
    return [
        RunRow(
            id=row[0],
            name=row[1],
            state_type=row[2],
            expected_start_time=_when(row[3]),
            start_time=_when(row[4]) if row[4] else None,
            end_time=_when(row[5]) if row[5] else None,
        )
        for row in rows
    ]


def deployment_updated(prefect_home: Path, deployment: str) -> datetime | None:
    """When a deployment was last created or updated (``serve`` upserts it as it starts)."""
    with read_database(prefect_home) as db:
        row = db.execute("SELECT updated FROM deployment WHERE name = ?", (deployment,)).fetchone()
    return _when(row[0]) if row else None


def deployment_concurrency(prefect_home: Path, deployment: str) -> tuple[int, str] | None:
    """A deployment's concurrency limit and collision strategy, or None without a limit."""
    with read_database(prefect_home) as db:
        row = db.execute(
            'SELECT concurrency_limit_v2."limit", deployment.concurrency_options '
            "FROM deployment JOIN concurrency_limit_v2 "
            "ON concurrency_limit_v2.id = deployment.concurrency_limit_id "
            "WHERE deployment.name = ?",
            (deployment,),
        ).fetchone()
    if row is None:
        return None
    return int(row[0]), str(json.loads(row[1] or "{}").get("collision_strategy"))


def wait_until(condition: Callable[[], T | None], *, timeout: float, what: str) -> T:
    """Poll ``condition`` until it returns something true (a list with a row, a path)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


# -- reading -------------------------------------------------------------------


@contextlib.contextmanager
def read_database(prefect_home: Path) -> Iterator[sqlite3.Connection]:
    """Prefect's database under ``prefect_home``, read-only (a live one through its WAL)."""
    db = sqlite3.connect(f"file:{Path(prefect_home) / DATABASE}?mode=ro", uri=True, timeout=30)
    try:
        yield db
    finally:
        db.close()


def _flow_run_filter(
    flow_name: str | None, flow_run_ids: list[str] | None
) -> tuple[str, list[str]]:
    clauses, arguments = ["1"], []
    if flow_name is not None:
        clauses.append("flow.name = ?")
        arguments.append(flow_name)
    if flow_run_ids is not None:
        clauses.append(f"flow_run.id IN ({', '.join('?' * len(flow_run_ids)) or 'NULL'})")
        arguments.extend(flow_run_ids)
    return " AND ".join(clauses), arguments


def _database_text(path: Path) -> bytes:
    """Every cell of every table (a live database is read through its write-ahead log)."""
    out: list[bytes] = []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        tables = [
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        for table in tables:
            for row in db.execute(f'SELECT * FROM "{table}"'):
                for cell in row:
                    out.extend(_cell(cell))
    finally:
        db.close()
    return b"\n".join(out)


def _cell(cell: object) -> list[bytes]:
    if cell is None:
        return []
    if isinstance(cell, bytes):
        return [cell, *_decoded(cell)]
    text = str(cell)
    found = [text.encode("utf-8", "surrogateescape")]
    with contextlib.suppress(ValueError):
        found.append(json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8"))
    return found


def _decoded(data: bytes) -> list[bytes]:
    """Result files: JSON holding base64 of a pickle, or base64, or a pickle itself."""
    found: list[bytes] = []
    with contextlib.suppress(ValueError, UnicodeDecodeError):
        document = json.loads(data)
        found.append(json.dumps(document, ensure_ascii=False).encode("utf-8"))
        for text in _strings(document):
            found.extend(_unbase64(text.encode("ascii", "ignore")))
    found.extend(_unbase64(data))
    found.extend(_pickle_strings(data))
    return found


def _strings(document: object) -> Iterator[str]:
    if isinstance(document, str):
        yield document
    elif isinstance(document, dict):
        for value in document.values():
            yield from _strings(value)
    elif isinstance(document, list):
        for value in document:
            yield from _strings(value)


def _unbase64(data: bytes) -> list[bytes]:
    stripped = data.strip()
    if len(stripped) < 8:
        return []
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        return []
    return [raw, *_pickle_strings(raw)]


def _pickle_strings(data: bytes) -> list[bytes]:
    """The str and bytes arguments of a pickle's opcodes, without unpickling it."""
    if not data.startswith(b"\x80"):  # protocol 2 and later (cloudpickle uses 5)
        return []
    found: list[bytes] = []
    with contextlib.suppress(Exception):  # a truncated or foreign stream: keep what was read
        for _opcode, argument, _position in pickletools.genops(data):
            if isinstance(argument, str):
                found.append(argument.encode("utf-8", "surrogateescape"))
            elif isinstance(argument, bytes | bytearray):
                found.append(bytes(argument))
    return found


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
