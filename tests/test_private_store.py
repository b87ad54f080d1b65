"""The private location as the README describes it: mode 0700, the link table, the account of each run."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from pipeline.dicom.profile import load_profile
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome
from pipeline.steps.dicom_file import deidentify_tree
from tests.batch.faults import KEY, corpus


def test_the_private_location_is_0700_and_holds_each_runs_account(tmp_path: Path) -> None:
    source = corpus(tmp_path / "in", 5)
    (source / "notes.txt").write_text("not DICOM")
    private = tmp_path / "private"
    summary = deidentify_tree(
        source, tmp_path / "out", KEY, load_profile("research"), PrivateStore(private)
    )
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert stat.S_IMODE((private / "links.sqlite").stat().st_mode) == 0o600
    account = private / "runs" / f"{summary.run_id}.json"
    assert stat.S_IMODE(account.stat().st_mode) == 0o600
    record = json.loads(account.read_text())
    # Every input is accounted for, by outcome and, where it was not written, by reason.
    assert record["seen"] == 6 == sum(record["outcomes"].values())
    assert record["outcomes"] == {"written": 5, "quarantined": 1}
    assert list(record["reasons"]) == ["unreadable"] and len(record["reasons"]["unreadable"]) == 1
    assert record == summary.as_dict()
    assert summary.outcomes == {Outcome.WRITTEN: 5, Outcome.QUARANTINED: 1}
    # The store records one row per input of the run, and the link of each written one.
    store = PrivateStore(private)
    assert len(store.inputs_for(summary.run_id)) == 6
    assert len(store.links_for(summary.run_id)) == 5


def test_a_private_location_made_readable_by_others_is_closed_again(tmp_path: Path) -> None:
    private = tmp_path / "private"
    private.mkdir(mode=0o755)
    private.chmod(0o755)
    PrivateStore(private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
