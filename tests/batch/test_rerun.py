"""Reruns are incremental and safe: unchanged inputs are not touched, changed rules rewrite what
they change, and a source file changed under a released identity is a conflict, not an overwrite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from pipeline.batch.runner import RunSummary
from pipeline.dicom.profile import Profile, load_profile
from pipeline.private_store import PrivateStore
from pipeline.reasons import Outcome, Reason
from pipeline.rulefiles import rules_root
from pipeline.steps.dicom_file import deidentify_tree
from tests.batch.faults import KEY, corpus
from tests.release import released

FILES = 40


def deid(source: Path, work: Path, profile: Profile | None = None) -> RunSummary:
    profile = profile or load_profile("research")
    return deidentify_tree(source, work / "out", KEY, profile, PrivateStore(work / "private"))


def inodes(out: Path) -> dict[str, tuple[int, int]]:
    return {
        p.relative_to(out).as_posix(): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in released(out)
    }


@pytest.fixture
def source(tmp_path: Path) -> Path:
    return corpus(tmp_path / "in", FILES, per_folder=10)


def test_a_rerun_over_a_complete_output_touches_nothing(source: Path, tmp_path: Path) -> None:
    first = deid(source, tmp_path)
    assert first.outcomes == {Outcome.WRITTEN: FILES}
    before = inodes(tmp_path / "out")
    again = deid(source, tmp_path)
    assert again.outcomes == {Outcome.UNCHANGED: FILES}
    assert inodes(tmp_path / "out") == before  # same inodes, never rewritten


def test_a_touched_input_is_read_again_but_its_output_is_not_rewritten(
    source: Path, tmp_path: Path
) -> None:
    deid(source, tmp_path)
    before = inodes(tmp_path / "out")
    touched = sorted(source.rglob("IM*"))[3]
    os.utime(touched, ns=(1, 1))  # same bytes, another time stamp
    again = deid(source, tmp_path)
    assert again.outcomes == {Outcome.UNCHANGED: FILES}
    assert inodes(tmp_path / "out") == before


def test_a_changed_rule_set_rewrites_what_it_changes(source: Path, tmp_path: Path) -> None:
    """A site edits a rule of its profile: only outputs whose bytes change are rewritten."""
    spaced = source / "series999" / "IM99999"
    spaced.parent.mkdir()
    ds = dcmread(sorted(source.rglob("IM*"))[0])
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.9999.7"
    ds.PixelSpacing = [0.5, 0.5]  # only this file holds the element the edit is about
    ds.save_as(spaced, enforce_file_format=True)
    assert deid(source, tmp_path).outcomes == {Outcome.WRITTEN: FILES + 1}
    before = inodes(tmp_path / "out")
    rules = tmp_path / "rules" / "dicom"
    shutil.copytree(rules_root() / "dicom", rules)
    research = rules / "research.yaml"
    research.write_text(research.read_text() + "  - {keyword: PixelSpacing, action: remove}\n")
    edited = load_profile(research)
    assert edited.name == "research" and edited.digest != load_profile("research").digest
    changed = deid(source, tmp_path, edited)
    # Every input is read again (the rules changed); only the one whose output
    # changed is rewritten, the others keep their inode.
    assert changed.outcomes == {Outcome.UNCHANGED: FILES, Outcome.WRITTEN: 1}
    after = inodes(tmp_path / "out")
    assert after.keys() == before.keys()
    (rewritten,) = [name for name in after if after[name] != before[name]]
    assert "PixelSpacing" not in dcmread(tmp_path / "out" / rewritten)
    assert deid(source, tmp_path, edited).outcomes == {Outcome.UNCHANGED: FILES + 1}


def test_a_source_file_changed_under_a_released_identity_is_a_conflict(
    source: Path, tmp_path: Path
) -> None:
    deid(source, tmp_path)
    before = inodes(tmp_path / "out")
    contents = {k: (tmp_path / "out" / k).read_bytes() for k in before}
    victim = sorted(source.rglob("IM*"))[5]
    pixels = bytes(range(40, 56))  # a run of the pixel data: survives de-identification
    victim.write_bytes(victim.read_bytes().replace(pixels, pixels[::-1]))
    again = deid(source, tmp_path)
    assert again.outcomes == {Outcome.UNCHANGED: FILES - 1, Outcome.QUARANTINED: 1}
    assert list(again.reasons) == [Reason.CHANGED_AT_SOURCE]
    # The released file is not overwritten; the new copy waits in quarantine.
    assert inodes(tmp_path / "out") == before
    assert {k: (tmp_path / "out" / k).read_bytes() for k in before} == contents
    (key,) = again.reasons[Reason.CHANGED_AT_SOURCE]
    assert list((tmp_path / "private" / "quarantine").rglob(f"{key}*.json"))


def test_a_released_file_removed_by_hand_is_written_again(source: Path, tmp_path: Path) -> None:
    deid(source, tmp_path)
    deid(source, tmp_path)  # a rerun that skips everything keeps what each input made
    gone = released(tmp_path / "out")[7]
    gone.unlink()
    again = deid(source, tmp_path)
    assert again.outcomes == {Outcome.UNCHANGED: FILES - 1, Outcome.WRITTEN: 1}
    assert gone.is_file()
