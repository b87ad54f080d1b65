"""prefect_text finds a value wherever Prefect keeps it, encoded as Prefect encodes it.

The PHI tests assert that no planted value appears in ``prefect_text``; that
proves something only if a value that *is* there would be found.  A flow
here puts an accented canary in a parameter (stored as JSON with ``\\u00fc``),
a persisted result (base64 of a cloudpickle), a log line and an artifact, and each is found
where the raw bytes do not show it.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.server import LocalServer
from tests.flows.prefect_records import (
    RunCounts,
    prefect_text,
    read_database,
    run_counts,
    wait_until,
)

FLOW = "mricurate-records-probe"


@flow(name=FLOW, persist_result=True)  # persisted on purpose: a result file to read
def leaky(value: str) -> dict[str, str]:
    get_run_logger().info("a log line with %s in it", value.upper())
    create_markdown_artifact(markdown=f"an artifact with {value.lower()} in it", key="probe")
    return {"name": value}


def _logged(prefect_home: Path, flow_run: str, value: str) -> bool:
    with read_database(prefect_home) as db:
        rows = db.execute("SELECT message FROM log WHERE flow_run_id = ?", (flow_run,))
        return any(value in message for (message,) in rows)


def _alone(path: Path, folder: Path) -> Path:
    """A folder holding a copy of ``path`` only."""
    folder.mkdir()
    shutil.copy2(path, folder / path.name)
    return folder


def test_prefect_text_finds_a_value_wherever_prefect_keeps_it(
    prefect_server: LocalServer, prefect_home: Path, tmp_path: Path
) -> None:
    canary = f"Canary-Müller-{uuid.uuid4().hex[:8]}"
    needle = canary.encode()
    state = leaky(canary, return_state=True)
    flow_run = str(state.state_details.flow_run_id)
    assert run_counts(prefect_home, FLOW, flow_run_ids=[flow_run]) == RunCounts(1, 0)
    wait_until(
        lambda: _logged(prefect_home, flow_run, canary.upper()), timeout=30, what="the log line"
    )

    # The database: the parameter is JSON with \u00fc escapes, never UTF-8 bytes.
    database = tmp_path / "database"
    database.mkdir()
    with (
        read_database(prefect_home) as live,
        closing(sqlite3.connect(database / "prefect.db")) as copy,
    ):
        live.backup(copy)
    assert needle not in (database / "prefect.db").read_bytes()
    assert needle in prefect_text(database)

    # The result file: base64 of a pickle, the value shows only decoded.
    results = [
        path
        for path in sorted((prefect_home / "storage").iterdir())
        if needle in prefect_text(_alone(path, tmp_path / f"alone-{path.name}"))
    ]
    assert len(results) == 1
    assert needle not in results[0].read_bytes()

    # All of it at once, as the PHI tests read it: the log line and the artifact too.
    everything = prefect_text(prefect_home)
    assert needle in everything
    assert canary.upper().encode() in everything
    assert canary.lower().encode() in everything, "artifacts (the audit summary) are read"
