"""The ingest flow end to end: real Prefect, SQLite, Tesseract, HDF5, on the generated sample.

Every input ends released, quarantined with a reason, or awaiting review;
the leak check passes; the manifests validate; a second run changes nothing.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from collections import Counter
from pathlib import Path

from prefect.utilities.asyncutils import run_coro_as_sync

from flows.ingest import FLOW_NAME, ingest
from flows.server import LocalServer
from pipeline.catalog import Catalog
from pipeline.catalog.states import ItemState
from pipeline.demo import leaked_values
from pipeline.report import MARKDOWN_KEY, TABLE_KEY
from tests.flows.conftest import _drain
from tests.flows.prefect_records import phi_in_prefect, read_database, run_counts
from tests.flows.sample import sample_workspace

FINAL = {ItemState.RELEASED, ItemState.QUARANTINED, ItemState.NEEDS_REVIEW}


def _ingest(root: Path) -> dict[str, object]:
    return ingest(str(root), jobs=2)


def _files(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _check_run(root: Path, url: str, contents: set[bytes], planted: list[str]) -> Path:
    """Every input ends released, quarantined with a reason or in review; the version is sound."""
    catalog = Catalog.open(url)
    try:
        items = catalog.items()
        assert len(items) == len(contents), "one item per distinct content, none lost"
        states = Counter(i.state for i in items)
        assert set(states) <= FINAL, states
        assert states[ItemState.RELEASED] > 0
        for item in items:
            if item.state is ItemState.QUARANTINED:
                assert item.reason, f"item {item.sha256[:12]} quarantined without a reason"
        # The bad files of the sample are quarantined with the reason they deserve.
        reasons = Counter(i.reason for i in items if i.state is ItemState.QUARANTINED)
        assert reasons["unreadable"] >= 3  # empty, truncated, random bytes, notes.txt
        assert reasons["dicomdir-index"] == 1
        # ... and the PHI-free account in quarantine/ lists exactly them, with the same codes.
        with (root / "quarantine" / "quarantined.csv").open(newline="") as handle:
            account = {row["input"]: row["reason"] for row in csv.DictReader(handle)}
        assert account == {i.sha256: i.reason for i in items if i.state is ItemState.QUARANTINED}
        release = catalog.latest_release()
        assert release is not None
        released = {f.relpath for f in release.files}
    finally:
        catalog.close()
    version = root / "release" / release.version
    assert leaked_values(version, planted) == [], "an independent search finds no planted value"
    # The version checks itself: sha256sum and Frictionless, the real tools.
    subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=version, check=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "frictionless"), "validate", "datapackage.json"],
        cwd=version, check=True, capture_output=True,
    )  # fmt: skip
    on_disk = {
        str(p.relative_to(version))
        for area in ("dicom", "raw", "fastmri")
        for p in (version / area).rglob("*")
        if p.is_file()
    }
    assert on_disk == released, "the catalog records exactly the files of the version"
    assert any(version.glob("dicom/**/*.dcm")) and any(version.glob("raw/**/*.h5"))
    assert any(version.glob("fastmri/**/*.h5"))
    return version


def _contents(incoming: Path) -> set[bytes]:
    return {p.read_bytes() for p in incoming.rglob("*") if p.is_file()}


def test_every_input_ends_released_quarantined_or_in_review_and_nothing_leaks(
    tmp_path: Path, prefect_server: LocalServer, prefect_home: Path
) -> None:
    workspace, _, planted = sample_workspace(tmp_path / "w")
    contents = _contents(workspace.incoming)

    before_runs = run_counts(prefect_home, FLOW_NAME)
    summary = _ingest(workspace.root)
    assert summary["leak_check"]["failed"] == 0  # type: ignore[index]
    _check_run(workspace.root, workspace.catalog_url, contents, planted)

    # What Prefect keeps of the run (every table, the WAL, logs, files) names no one.
    run_coro_as_sync(_drain())
    after_runs = run_counts(prefect_home, FLOW_NAME)
    assert after_runs.flow_runs == before_runs.flow_runs + 1
    assert after_runs.task_runs == before_runs.task_runs + 8, "every task run was recorded"
    # The run's audit artifacts are there, so the search below covers them.
    with read_database(prefect_home) as db:
        keys = {key for (key,) in db.execute("SELECT key FROM artifact")}
    assert {MARKDOWN_KEY, TABLE_KEY} <= keys, "the run posted its audit artifacts"
    paths = [str(p.relative_to(workspace.incoming)) for p in workspace.incoming.rglob("*")]
    found = phi_in_prefect(prefect_home, planted + paths)
    assert found == [], f"{len(found)} planted value(s) or input path(s) in Prefect's records"

    before = _files(workspace.release)
    again = _ingest(workspace.root)
    assert again["release"]["version"] == ""  # type: ignore[index]
    assert again["discovered"]["new"] == 0  # type: ignore[index]
    assert _files(workspace.release) == before, "a second run changes nothing"


def test_the_same_against_postgresql(
    tmp_path: Path, pg_url: str, prefect_server: LocalServer
) -> None:
    workspace, _, planted = sample_workspace(
        tmp_path / "w", subjects=1, clean_pixels=False, catalog_url=pg_url
    )
    contents = _contents(workspace.incoming)
    _ingest(workspace.root)
    _check_run(workspace.root, pg_url, contents, planted)
    assert not (workspace.private / "catalog.sqlite").exists(), "the catalog is on the server"
