"""``quarantine/quarantined.csv``: what is kept out, by content hash, validated, PHI-free."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from pipeline.atomic import TEMP_PREFIX
from pipeline.catalog import Catalog, StateChange
from pipeline.catalog.states import Decision, InputKind, ItemState, ReviewReason
from pipeline.ingest.quarantine import write_account
from pipeline.reasons import Reason
from pipeline.release.errors import ContractViolation
from pipeline.workspace import init_workspace, open_workspace

A, B, C = "a" * 64, "b" * 64, "c" * 64


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_account_lists_what_is_quarantined_now_with_code_meaning_and_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspace = open_workspace(init_workspace(tmp_path / "w").root)
    with Catalog.open(workspace.catalog_url) as catalog:
        run = catalog.start_run("ingest", ruleset_version="r", key_fingerprint="k")
        catalog.register(
            [(A, InputKind.OTHER, 3), (B, InputKind.DICOM, 9), (C, InputKind.DICOM, 9)], run
        )
        catalog.transition([StateChange(A, ItemState.QUARANTINED, Reason.UNREADABLE.value)], run)
        catalog.transition([StateChange(B, ItemState.PROCESSED)], run)
        catalog.transition([StateChange(C, ItemState.PROCESSED)], run)
        catalog.transition(
            [StateChange(C, ItemState.QUARANTINED, ReviewReason.LEAK_CHECK.value)], run
        )

        path = write_account(workspace, catalog)
        rows = {row["input"]: row for row in _rows(path)}
        assert set(rows) == {A, C}  # B is on its way, not kept out
        assert rows[A]["reason"] == "unreadable" and rows[A]["kind"] == "other"
        assert rows[A]["explanation"] == Reason.UNREADABLE.text
        assert rows[C]["reason"] == "leak-check" and "leak check" in rows[C]["explanation"]
        assert rows[A]["run"] == str(run) and rows[A]["since"].endswith("Z")

        # A reviewer's rejection, outside any run, shows up with no run; a
        # re-processed input leaves the table.
        catalog.transition([StateChange(A, ItemState.NEW)], run)
        queue = catalog.enqueue_review(B, [ReviewReason.SPOT_CHECK], run)
        catalog.decide(queue, Decision.REJECT, reviewer="r", reason="face", ruleset_version="r")
        rows = {row["input"]: row for row in _rows(write_account(workspace, catalog))}
        assert set(rows) == {B, C} and rows[B]["reason"] == "reject" and rows[B]["run"] == ""
        assert "face" not in path.read_text()  # the reviewer's words stay in the catalog

        # A table that breaks its contract is never put in place.
        before = path.read_bytes()
        monkeypatch.setattr(
            "pipeline.ingest.quarantine.explanation", lambda code: "" if code == "reject" else "x"
        )
        with pytest.raises(ContractViolation):
            write_account(workspace, catalog)
        assert path.read_bytes() == before
        assert not [p for p in workspace.quarantine.iterdir() if p.name.startswith(TEMP_PREFIX)]
