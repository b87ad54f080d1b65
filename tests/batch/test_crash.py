"""Killed at any moment of a commit, the run leaves no released file without its records.

Each case runs ``deid`` in a forked process that SIGKILLs itself at one
moment of the commit protocol: after a batch is recorded but before any
rename, after the k-th rename, before the last batch is marked done.  The kill is
real; only its moment is chosen, so that every window of the protocol is hit
(random timing would hit the few milliseconds of a commit rarely).  After
each kill the invariants hold, and the next run settles the journal and
finishes with the same release as a run that was never interrupted.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
from pathlib import Path

import pytest

import pipeline.batch.commit as commit
from pipeline.dicom.profile import load_profile
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome
from pipeline.steps.dicom_file import deidentify_tree
from tests.batch.faults import KEY, assert_consistent, corpus, temps
from tests.release import released

FILES = 64
BATCH = 16  # four batches: kills land in the first, a middle and the last one


def _run(source: Path, out: Path, private: Path) -> None:
    deidentify_tree(source, out, KEY, load_profile("research"), PrivateStore(private), jobs=1)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _crashing_run(source: Path, out: Path, private: Path, moment: str, n: int) -> None:
    """In a forked child: run, and SIGKILL this process at ``moment`` number ``n``."""
    commit.COMMIT_BATCH = BATCH
    calls = {"n": 0}

    def hit() -> bool:
        calls["n"] += 1
        return calls["n"] - 1 == n

    if moment == "rename":
        real_replace = os.replace

        def replace(src: object, dst: object) -> None:
            if f"{os.sep}.mricurate{os.sep}tmp{os.sep}" in os.fsdecode(src) and hit():  # type: ignore[arg-type]
                _die()
            real_replace(src, dst)  # type: ignore[arg-type]

        os.replace = replace  # type: ignore[assignment]
    else:
        name = {"recorded": "begin_commit", "finishing": "finish_commit"}[moment]
        real = getattr(PrivateStore, name)

        def wrapped(self: PrivateStore, *args: object, **kwargs: object) -> object:
            if moment == "finishing" and hit():
                _die()
            result = real(self, *args, **kwargs)
            if moment == "recorded" and hit():
                _die()
            return result

        setattr(PrivateStore, name, wrapped)
    _run(source, out, private)


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus(tmp_path_factory.mktemp("crash") / "in", FILES, per_folder=20)


@pytest.fixture(scope="module")
def clean_release(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    work = tmp_path_factory.mktemp("clean")
    _run(source, work / "out", work / "private")
    return {p.relative_to(work / "out").as_posix(): p.read_bytes() for p in released(work / "out")}


MOMENTS = [
    ("recorded", 0),  # the first batch recorded, not one file renamed
    ("rename", 0),
    ("rename", 1),
    ("rename", BATCH - 1),  # the last rename of the first batch
    ("recorded", 1),  # the first batch synced and marked done, the second recorded
    ("rename", 2 * BATCH + 7),  # a middle batch
    ("finishing", 0),  # every batch renamed, the last not yet synced nor marked done
]


@pytest.mark.parametrize(("moment", "n"), MOMENTS)
def test_a_kill_at_any_moment_of_a_commit_keeps_files_and_records_together(
    source: Path, clean_release: dict[str, bytes], tmp_path: Path, moment: str, n: int
) -> None:
    out, private = tmp_path / "out", tmp_path / "private"
    child = multiprocessing.get_context("fork").Process(
        target=_crashing_run, args=(source, out, private, moment, n)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    # At the moment of the kill: no released file without its records and links.
    assert_consistent(private, out)
    with sqlite3.connect(private / "links.sqlite") as db:
        pending = db.execute("SELECT count(*) FROM commits WHERE state = 'pending'").fetchone()[0]
    assert pending == 1  # the batch the kill interrupted

    _run(source, out, private)  # settles the journal, then goes on
    assert_consistent(private, out)
    assert not temps(out)
    with sqlite3.connect(private / "links.sqlite") as db:
        states = {r[0] for r in db.execute("SELECT state FROM commits")}
        rows = db.execute("SELECT count(*) FROM outputs").fetchone()[0]
    assert states == {"done"}
    assert rows == FILES
    after = {p.relative_to(out).as_posix(): p.read_bytes() for p in released(out)}
    assert after == clean_release


def test_the_interrupted_batch_is_finished_not_redone(source: Path, tmp_path: Path) -> None:
    """Recorded but not renamed: the next run renames the durable temps into place."""
    out, private = tmp_path / "out", tmp_path / "private"
    child = multiprocessing.get_context("fork").Process(
        target=_crashing_run, args=(source, out, private, "recorded", 0)
    )
    child.start()
    child.join(60)
    assert child.exitcode == -signal.SIGKILL
    assert not released(out) and len(temps(out)) >= BATCH  # and what workers did meanwhile
    summary = deidentify_tree(source, out, KEY, load_profile("research"), PrivateStore(private))
    # The first batch was completed from its temps: its inputs are unchanged now.
    assert summary.outcomes == {Outcome.UNCHANGED: BATCH, Outcome.WRITTEN: FILES - BATCH}
