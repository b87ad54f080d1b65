"""``kill -9`` of ``mricurate ingest`` in the middle of a run, then ``ingest`` again.

The second run finishes the work: no partial file in ``release/``, no input
lost or counted twice, and the killed flow run (and its task runs), left
RUNNING by Prefect, marked Crashed.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections import Counter
from pathlib import Path

from prefect import tags

from flows.ingest import FLOW_NAME, ingest, workspace_tag
from flows.server import LocalServer
from pipeline.catalog import Catalog
from pipeline.catalog.states import ItemState
from tests.flows.conftest import StartChild
from tests.flows.prefect_records import read_database, wait_until
from tests.flows.sample import sample_workspace

CLI = "import sys; from mricurate.cli import main; sys.exit(main(sys.argv[1:]))"
FINAL = {ItemState.RELEASED, ItemState.QUARANTINED, ItemState.NEEDS_REVIEW}


def _staged(root: Path, area: str) -> int:
    folder = root / "private" / "staging" / area
    return sum(1 for p in folder.rglob("*") if p.is_file() and ".mricurate" not in p.parts)


def test_kill_9_mid_run_then_ingest_again_finishes_the_work(
    tmp_path: Path,
    prefect_server: LocalServer,
    prefect_home: Path,
    start_child: StartChild,
) -> None:
    workspace, _, _ = sample_workspace(tmp_path / "w", subjects=1, clean_pixels=False)
    config = workspace.root / "mricurate.toml"
    config.write_text(config.read_text() + f'\n[prefect]\napi_url = "{prefect_server.api_url}"\n')
    contents = {p.read_bytes() for p in workspace.incoming.rglob("*") if p.is_file()}

    child = start_child(CLI, "ingest", "--workspace", str(workspace.root))
    # Killed during the DICOM stage, with part of its outputs committed: every later
    # stage picks its inputs by catalog state the same way (and tests/batch kills the
    # runner at every moment of a commit).
    wait_until(lambda: _staged(workspace.root, "dicom") >= 3 or None, timeout=120, what="DICOM")
    workers = _children_of(child.pid)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    wait_until(lambda: not any(Path(f"/proc/{pid}").exists() for pid in workers) or None,
               timeout=10, what="the killed run's workers to end")  # fmt: skip
    assert child.returncode == -signal.SIGKILL
    killed = _running_flow_runs(prefect_home)
    assert killed, "the killed flow run is left RUNNING by Prefect"

    with tags(workspace_tag(workspace.root)):
        summary = ingest(str(workspace.root), jobs=2)

    catalog = Catalog.open(workspace.catalog_url)
    try:
        items = catalog.items()
        release = catalog.latest_release()
    finally:
        catalog.close()
    assert len(items) == len(contents) == len({i.sha256 for i in items}), "none lost, none twice"
    assert set(Counter(i.state for i in items)) <= FINAL
    assert release is not None and release.version == "v0001"
    version = workspace.release / release.version
    subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=version, check=True)
    assert not list(workspace.release.glob(".building-*")), "no partial version"
    assert summary["crashed_before"], "the killed catalog run is recorded as crashed"
    for flow_run_id in killed:
        state, message = _flow_run(prefect_home, flow_run_id)
        assert state == "CRASHED", (state, message)
    with read_database(prefect_home) as db:
        marks = ",".join("?" * len(killed))
        unfinished = db.execute(
            f"SELECT count(*) FROM task_run WHERE flow_run_id IN ({marks}) AND state_type IN "
            "('RUNNING', 'PENDING')",
            killed,
        ).fetchone()[0]
    assert unfinished == 0, "the killed run's task runs are marked too"


def _running_flow_runs(prefect_home: Path) -> list[str]:
    with read_database(prefect_home) as db:
        rows = db.execute(
            "SELECT flow_run.id FROM flow_run JOIN flow ON flow.id = flow_run.flow_id "
            "WHERE flow.name = ? AND flow_run.state_type = 'RUNNING'",
            (FLOW_NAME,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def _flow_run(prefect_home: Path, flow_run_id: str) -> tuple[str, str | None]:
    from tests.flows.prefect_records import flow_run_state

    return flow_run_state(prefect_home, flow_run_id)


def _children_of(pid: int) -> list[int]:
    """The processes ``pid`` started (the runner's workers, Prefect's helpers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
