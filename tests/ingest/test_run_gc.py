"""An ingest run keeps what exists at its start out of the collector's full passes, for its length only."""

from __future__ import annotations

import gc
from pathlib import Path

from pipeline.ingest.run import IngestRun
from pipeline.workspace import init_workspace


def test_a_run_freezes_what_exists_at_its_start_and_unfreezes_it_at_its_end(
    tmp_path: Path,
) -> None:
    workspace = init_workspace(tmp_path / "w")
    assert gc.get_freeze_count() == 0
    with IngestRun.open(workspace, jobs=1):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_a_run_that_fails_unfreezes_too(tmp_path: Path) -> None:
    workspace = init_workspace(tmp_path / "w")
    try:
        with IngestRun.open(workspace, jobs=1):
            raise KeyboardInterrupt
    except KeyboardInterrupt:
        pass
    assert gc.get_freeze_count() == 0
