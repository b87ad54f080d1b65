"""A whole messy export, de-identified: every input accounted for, no PHI anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from pydicom import dcmread

from pipeline.batch.runner import RunSummary
from pipeline.demo import leaked_values
from pipeline.dicom.profile import Profile
from pipeline.errors import CurationError
from pipeline.keys import SecretKey
from pipeline.private_store import PrivateStore
from pipeline.reasons import Reason
from pipeline.samples import Subject, write_sample_tree
from pipeline.steps.dicom_file import deidentify_tree
from tests.release import released

KEY = SecretKey(b"\x11" * 32)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Subject]]:
    root = tmp_path_factory.mktemp("export")
    return root, write_sample_tree(root, n_subjects=3, slices=3)


def deid(
    source: Path, work: Path, profile: Profile, *, key: SecretKey = KEY, jobs: int = 1, **kw: bool
) -> tuple[RunSummary, PrivateStore, Path]:
    store = PrivateStore(work / "private")
    summary = deidentify_tree(source, work / "out", key, profile, store, jobs=jobs, **kw)
    return summary, store, work / "out"


def outcome_of(store: PrivateStore, summary: RunSummary) -> dict[str, tuple[str, str]]:
    return {
        str(Path(str(r["input_path"])).name): (str(r["outcome"]), str(r["reason"]))
        for r in store.inputs_for(summary.run_id)
    }


def test_every_input_is_accounted_for_and_nothing_leaks(
    tree: tuple[Path, list[Subject]], tmp_path: Path, research: Profile
) -> None:
    source, subjects = tree
    summary, store, out = deid(source, tmp_path, research)
    inputs = [p for p in source.rglob("*") if p.is_file()]
    assert summary.seen == len(inputs) == sum(summary.outcomes.values())
    outcomes = outcome_of(store, summary)
    assert outcomes["empty.dcm"] == ("quarantined", "unreadable")
    assert outcomes["IM0001_truncated.dcm"] == ("quarantined", "unreadable")
    assert outcomes["notes.txt"] == ("quarantined", "unreadable")
    assert outcomes["IM9999"] == ("quarantined", "unreadable")
    assert outcomes["DICOMDIR"][0] == "not copied"
    for name in ("encapsulated_pdf.dcm", "basic_sr.dcm"):
        assert outcomes[name] == ("quarantined", "sop-class-not-allowed")
    assert outcomes["private_sop.dcm"] == ("quarantined", "siemens-csa-non-image")
    for name in ("secondary_capture.dcm", "ultrasound.dcm"):
        assert outcomes[name] == ("held back", "may-carry-burned-in-text")
    written = released(out)
    assert len(written) == summary.written > 0
    assert not list(out.rglob(".mricurate-tmp*"))
    # not one planted value in any byte or path of the release, in any case
    planted = [v for s in subjects for v in s.phi.values()]
    assert leaked_values(out, planted) == []
    # every rejected input kept in quarantine with its reason; links recorded privately
    quarantined = [o for o in outcomes.values() if o[0] in ("quarantined", "held back")]
    assert len(list((store.root / "quarantine").rglob("*.json"))) == len(quarantined)
    links = store.links_for(summary.run_id)
    assert {str(link["patient_id"]) for link in links} == {s.phi.patient_id for s in subjects}


def test_headerless_file_and_name_variants(
    tree: tuple[Path, list[Subject]], tmp_path: Path, research: Profile
) -> None:
    source, subjects = tree
    summary, store, out = deid(source, tmp_path, research)
    rows = store.inputs_for(summary.run_id)
    headerless = next(r for r in rows if str(r["input_path"]).endswith("Series_001/IM0002"))
    assert headerless["outcome"] == "written"
    assert dcmread(out / str(headerless["output_path"])).preamble == b"\0" * 128
    # one subject folder per PatientID, even where the name is spelt two ways
    assert len([p for p in out.iterdir() if p.is_dir() and p.name != ".mricurate"]) == len(subjects)


def test_reruns_are_identical_and_jobs_do_not_change_output(
    tree: tuple[Path, list[Subject]], tmp_path: Path, research: Profile
) -> None:
    source, _ = tree
    _, _, one = deid(source, tmp_path / "a", research, jobs=1)
    _, _, two = deid(source, tmp_path / "b", research, jobs=2)
    files_one = {p.relative_to(one): p.read_bytes() for p in released(one, "*.dcm")}
    files_two = {p.relative_to(two): p.read_bytes() for p in released(two, "*.dcm")}
    assert files_one == files_two
    _, _, other = deid(source, tmp_path / "c", research, key=SecretKey(b"\x22" * 32))
    assert not {p.relative_to(other) for p in other.rglob("*.dcm")} & set(files_one)


def test_duplicates_and_conflicts(tmp_path: Path, research: Profile) -> None:
    from tests.dicom.conftest import tiny_mr

    source = tmp_path / "in"
    source.mkdir()
    tiny_mr().save_as(source / "a.dcm", enforce_file_format=True)
    shutil.copy(source / "a.dcm", source / "copy_of_a.dcm")
    changed = tiny_mr()
    changed.RepetitionTime = 1234.0  # same SOP Instance UID, different content
    changed.save_as(source / "z_changed.dcm", enforce_file_format=True)
    summary, store, out = deid(source, tmp_path, research)
    outcomes = outcome_of(store, summary)
    assert outcomes["a.dcm"][0] == "written"
    assert outcomes["copy_of_a.dcm"][0] == "duplicate"
    assert outcomes["z_changed.dcm"] == ("quarantined", "output-conflict")
    assert len(list(out.rglob("*.dcm"))) == 1


def test_keep_burned_in_writes_them(
    tree: tuple[Path, list[Subject]], tmp_path: Path, research: Profile
) -> None:
    source, _ = tree
    summary, store, _ = deid(source, tmp_path, research, keep_burned_in=True)
    outcomes = outcome_of(store, summary)
    assert outcomes["ultrasound.dcm"][0] == "written"
    assert outcomes["secondary_capture.dcm"][0] == "written"
    # Each is counted as a doubt with the reason it would have been held back for.
    assert summary.facts[Reason.MAY_CARRY_BURNED_IN_TEXT.review_fact] == 2


def test_private_location_inside_output_is_refused(tmp_path: Path, research: Profile) -> None:
    (tmp_path / "in").mkdir()
    store = PrivateStore(tmp_path / "out" / "private")
    with pytest.raises(CurationError, match="inside OUTPUT"):
        deidentify_tree(tmp_path / "in", tmp_path / "out", KEY, research, store)
    with pytest.raises(CurationError, match="must not contain each other"):
        deidentify_tree(
            tmp_path / "in", tmp_path / "in" / "out", KEY, research, PrivateStore(tmp_path / "p")
        )


def test_special_files_and_missing_source_are_reported(tmp_path: Path, research: Profile) -> None:
    import os

    from tests.dicom.conftest import tiny_mr

    source = tmp_path / "in"
    source.mkdir()
    tiny_mr().save_as(source / "a.dcm", enforce_file_format=True)
    os.mkfifo(source / "pipe")  # reading it would block the run forever
    (source / "dangling").symlink_to(tmp_path / "gone.dcm")
    summary, store, _ = deid(source, tmp_path, research)
    outcomes = outcome_of(store, summary)
    assert outcomes["pipe"] == ("quarantined", "not-a-regular-file")
    assert outcomes["dangling"] == ("quarantined", "not-a-regular-file")
    assert outcomes["a.dcm"][0] == "written"
    assert summary.seen == 3
    with pytest.raises(CurationError, match="does not exist"):
        deidentify_tree(
            tmp_path / "nowhere", tmp_path / "o", KEY, research, PrivateStore(tmp_path / "p")
        )


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_dicomdir_is_new_valid_and_indexes_every_written_file(
    tree: tuple[Path, list[Subject]], tmp_path: Path, research: Profile
) -> None:
    import subprocess

    from pydicom.fileset import FileSet

    source, subjects = tree
    summary, store, out = deid(source, tmp_path, research, dicomdir=True)
    fileset = FileSet(dcmread(out / "DICOMDIR"))
    assert len(list(fileset)) == summary.written
    on_disk = {p.relative_to(out).as_posix() for p in released(out)}
    recorded = {
        str(row["output_path"]) for row in store.inputs_for(summary.run_id) if row["output_path"]
    }
    assert on_disk == {"DICOMDIR"} | recorded  # the link table follows the move
    assert leaked_values(out, [v for s in subjects for v in s.phi.values()]) == []
    result = subprocess.run(["dciodvfy", str(out / "DICOMDIR")], capture_output=True, text=True)
    assert not [x for x in (result.stdout + result.stderr).splitlines() if x.startswith("Error")]
    with pytest.raises(CurationError, match="must be empty"):
        deid(source, tmp_path, research, dicomdir=True)
