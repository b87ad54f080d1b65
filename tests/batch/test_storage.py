"""Our own storage failing under a real run: small, full and read-only tmpfs mounts.

A full or read-only OUTPUT or private location is our failure, never an
input's: the run stops with exit 3 and a message that says what happened and
what to do, blames and quarantines nothing, leaves no temp file and no
released file without its records, and the next run (once there is room)
finishes the release exactly as a run on a roomy disk would have.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from pipeline.batch.runner import RunSummary
from pipeline.dicom.profile import load_profile
from pipeline.errors import StorageError
from pipeline.pixels.scan import write_findings
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.reasons import Outcome
from pipeline.steps.dicom_file import deidentify_tree
from pipeline.steps.raw_file import convert_tree
from pipeline.steps.scan_file import scan_tree
from tests.batch.conftest import (
    KEY,
    Corpus,
    check_message,
    check_no_phi,
    check_no_temp_files,
    check_not_blamed,
    check_records,
    quarantined,
    release_bytes,
    run_cli,
    run_ids,
    store_rows,
    write_burned_in,
    write_dicom,
    write_raw,
)
from tests.release import released

NO_SPACE = ("no space left", "enospc", "free space", "run again")
FAILED_SHAPES = ("worker-died", "stalled", "quarantined", "internal-error")


def deid_reference(source: Path, work: Path) -> dict[str, bytes]:
    """The release of ``source`` on a roomy disk (the library, a fresh private location)."""
    out = work / "out"
    summary = deidentify_tree(
        source, out, KEY, load_profile("research"), PrivateStore(work / "private"), jobs=1
    )
    assert summary.exit_status == 0
    return release_bytes(out)


def convert_tree_of(source: Path, out: Path, private: Path, fastmri: Path | None = None) -> int:
    summary = convert_tree(
        source, out, KEY, PrivateStore(private), load_header_rules(),
        date_shift_days=load_profile("research").date_shift_days, fastmri=fastmri, jobs=1,
    )  # fmt: skip
    return summary.exit_status


def not_failed_on_inputs(stdout: str) -> None:
    """The summary blames no input for our failure."""
    for shape in FAILED_SHAPES:
        assert shape not in stdout, f"an input was reported {shape!r}: {stdout}"


def library_failure(error: StorageError, *needles: str) -> None:
    """The library's side of exit 3: the message, and a summary that blames no input."""
    message = str(error).lower()
    for needle in needles:
        assert needle.lower() in message, f"{needle!r} not in {error}"
    summary = error.summary
    assert isinstance(summary, RunSummary)
    assert summary.exit_status == 3 and summary.failure
    assert not summary.reasons, f"inputs blamed for our failure: {summary.reasons}"
    assert not summary.count(Outcome.QUARANTINED) and not summary.count(Outcome.HELD_BACK)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> tuple[Corpus, Path]:
    """Two twix files, and their release (ISMRMRD and fastMRI) made on a roomy disk."""
    root = tmp_path_factory.mktemp("raw")
    corpus = write_raw(root / "in", n_files=2)
    roomy = root / "roomy"
    assert convert_tree_of(corpus.root, roomy / "out", roomy / "private", roomy / "fastmri") == 0
    return corpus, roomy


# -- OUTPUT too small --------------------------------------------------------------


def test_deid_into_a_too_small_output_stops_then_finishes(
    tmp_path: Path, tmpfs, key_file: Path
) -> None:
    corpus = write_dicom(tmp_path / "in", n_slices=24)
    disk = tmpfs("out", "64k")
    out, private = disk.point / "release", tmp_path / "private"
    args = ("deid", corpus.root, out, "--key-file", key_file, "--private-dir", private)

    failed = run_cli(*args, "--jobs", "1")

    assert failed.returncode == 3, failed.stderr
    check_message(failed, corpus, *NO_SPACE, "OUTPUT")
    not_failed_on_inputs(failed.stdout)
    check_no_temp_files(out)
    check_records(private, out)
    check_not_blamed(private, set(), set())

    disk.remount("size=64m")
    again = run_cli(*args, "--jobs", "2")

    assert again.returncode == 0, again.stderr
    check_no_phi(again, corpus)
    check_no_temp_files(out)
    check_records(private, out)
    assert quarantined(private) == set()
    release = release_bytes(out)
    assert len(release) == 24
    assert release == deid_reference(corpus.root, tmp_path / "roomy")


@pytest.mark.parametrize(("small", "via"), [("OUTPUT", "cli"), ("--fastmri", "library")])
def test_convert_into_a_full_output_is_our_failure_not_the_inputs(
    tmp_path: Path, tmpfs, key_file: Path, raw: tuple[Corpus, Path], small: str, via: str
) -> None:
    """libhdf5 can crash its worker after a failed write: still no input blamed, exit 3."""
    corpus, roomy = raw
    disk = tmpfs("small", "96k" if small == "OUTPUT" else "16k")
    out = (disk.point if small == "OUTPUT" else tmp_path) / "ismrmrd"
    fastmri = (disk.point if small == "--fastmri" else tmp_path) / "fastmri"
    private = tmp_path / "private"

    if via == "cli":
        failed = run_cli(
            "convert", corpus.root, out, "--key-file", key_file, "--private-dir", private,
            "--fastmri", fastmri, "--jobs", "1",
        )  # fmt: skip
        assert failed.returncode == 3, (failed.stdout, failed.stderr)
        check_message(failed, corpus, *NO_SPACE)
        not_failed_on_inputs(failed.stdout)
    else:
        with pytest.raises(StorageError) as failure:
            convert_tree_of(corpus.root, out, private, fastmri)
        library_failure(failure.value, *NO_SPACE)
    check_no_temp_files(out, fastmri)
    check_records(private, out, fastmri)
    check_not_blamed(private, set(), set())

    disk.remount("size=64m")
    assert convert_tree_of(corpus.root, out, private, fastmri) == 0
    check_no_temp_files(out, fastmri)
    check_records(private, out, fastmri)
    assert quarantined(private) == set()
    release = release_bytes(out)
    assert len(release) == 4  # a noise and an image measurement per file
    assert release == release_bytes(roomy / "out")
    assert len(released(fastmri)) == 2
    assert release_bytes(fastmri) == release_bytes(roomy / "fastmri")


def test_scan_findings_onto_a_full_disk_fail_as_ours(tmp_path: Path, tmpfs) -> None:
    """``scan --json F`` with F on a full file system: exit 3 and advice, not a traceback."""
    corpus = write_burned_in(tmp_path / "in")
    disk = tmpfs("findings", "64k")
    disk.fill()
    target, private = disk.point / "findings.json", tmp_path / "private"
    args = ("scan", corpus.root, "--private-dir", private, "--json", target)

    failed = run_cli(*args, "--ocr-engine", "tesseract", "--jobs", "1")

    assert failed.returncode == 3, (failed.stdout, failed.stderr)
    check_message(failed, corpus, *NO_SPACE)
    assert "Traceback" not in failed.stderr
    assert not target.exists()
    assert not list(disk.point.glob(".mricurate-tmp-*"))

    (disk.point / "filler").unlink()
    again = run_cli(*args, "--ocr-engine", "tesseract", "--jobs", "1")

    assert again.returncode == 0, again.stderr
    check_no_phi(again, corpus)
    roomy = tmp_path / "roomy.json"
    summary, findings = scan_tree(corpus.root, "tesseract", PrivateStore(tmp_path / "p2"), jobs=1)
    write_findings(findings, roomy)
    assert summary.exit_status == 0
    assert json.loads(target.read_text()) == json.loads(roomy.read_text())


# -- the private location full -----------------------------------------------------


@pytest.mark.parametrize(
    ("how", "via"), [("filled", "library"), ("nearly-full", "library"), ("no-inodes", "cli")]
)
def test_deid_with_a_full_private_location(
    tmp_path: Path, tmpfs, key_file: Path, how: str, via: str
) -> None:
    corpus = write_dicom(tmp_path / "in", n_slices=12)
    disk = tmpfs("private", "2m")
    private, out = disk.point / "private", tmp_path / "out"
    PrivateStore(private)  # the store exists; then its disk fills up
    if how == "filled":
        disk.fill()
    elif how == "nearly-full":
        disk.leave(64)  # room for the run to start, none for its records
    else:
        stats = os.statvfs(disk.point)
        disk.remount(f"nr_inodes={stats.f_files - stats.f_ffree + 1}")  # room for one file

    if via == "cli":
        failed = run_cli(
            "deid", corpus.root, out, "--key-file", key_file, "--private-dir", private,
            "--jobs", "1",
        )  # fmt: skip
        assert failed.returncode == 3, (failed.stdout, failed.stderr)
        check_message(failed, corpus, *NO_SPACE, "private location")
        assert "Traceback" not in failed.stderr
        not_failed_on_inputs(failed.stdout)
    else:
        with pytest.raises(StorageError) as failure:
            deidentify_tree(
                corpus.root, out, KEY, load_profile("research"), PrivateStore(private), jobs=1
            )
        assert "private location" in str(failure.value)
        if failure.value.summary is None:  # refused as the run started: nothing done
            assert all(n.lower() in str(failure.value).lower() for n in NO_SPACE)
        else:
            library_failure(failure.value, *NO_SPACE)
    check_no_temp_files(out)
    check_records(private, out)
    check_not_blamed(private, set(), set())
    if how == "nearly-full":
        assert len(run_ids(private)) == 1, "the run started, then its records failed"
    assert not list(private.rglob(".mricurate-tmp-*")), "a half-written private file"
    if out.exists():
        assert not released(out)


def test_scan_with_ocr_temp_files_on_a_full_private_location(tmp_path: Path, tmpfs) -> None:
    """OCR's temp files (the page image tesseract reads) live in the private location."""
    corpus = write_burned_in(tmp_path / "in", size=700)  # a ~500 KB page image to OCR
    disk = tmpfs("private", "4m")
    private = disk.point / "private"
    PrivateStore(private)
    disk.leave(200)  # enough for the records, not for the page image

    failed = run_cli(
        "scan", corpus.root, "--private-dir", private, "--json", tmp_path / "findings.json",
        "--ocr-engine", "tesseract", "--jobs", "1",
    )  # fmt: skip

    assert failed.returncode == 3, (failed.stdout, failed.stderr)
    check_message(failed, corpus, *NO_SPACE, "private location")
    not_failed_on_inputs(failed.stdout)
    assert len(run_ids(private)) == 1, "the run started: the OCR temp file failed, not the store"
    check_not_blamed(private, set(), set())
    tmp = private / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), "OCR temp files left behind"


# -- read-only -------------------------------------------------------------------


def test_deid_into_a_read_only_output(tmp_path: Path, tmpfs, key_file: Path) -> None:
    corpus = write_dicom(tmp_path / "in", n_slices=6)
    disk = tmpfs("out", "8m")
    out, private = disk.point / "release", tmp_path / "private"
    args = ("deid", corpus.root, out, "--key-file", key_file, "--private-dir", private)
    first = deidentify_tree(corpus.root, out, KEY, load_profile("research"), PrivateStore(private))
    assert first.written == 6
    before, runs, kept = release_bytes(out), run_ids(private), quarantined(private)
    # New inputs arrive (one of them bad), but the release disk went read-only.
    shutil.copy(next(corpus.root.rglob("IM0001")), corpus.root / "IM0001_copy")
    (corpus.root / "empty").write_bytes(b"")
    write_dicom(tmp_path / "in" / "more", n_slices=2, subjects=2)
    disk.remount("ro")

    failed = run_cli(*args, "--jobs", "1")

    assert failed.returncode == 3, (failed.stdout, failed.stderr)
    check_message(failed, corpus, "read-only", "EROFS", "remount it read-write", "OUTPUT")
    not_failed_on_inputs(failed.stdout)
    check_not_blamed(private, runs, kept)
    assert release_bytes(out) == before
    check_records(private, out)
    inputs = store_rows(private, "SELECT count(*) FROM inputs")
    assert inputs == [(6,)], "only the first run's inputs are recorded"


def test_read_only_private_location(tmp_path: Path, tmpfs, key_file: Path) -> None:
    corpus = write_dicom(tmp_path / "in", n_slices=2)
    disk = tmpfs("private", "2m")
    private, out = disk.point / "private", tmp_path / "out"
    PrivateStore(private).close()  # a connection left open keeps the mount busy
    disk.remount("ro")

    failed = run_cli(
        "deid", corpus.root, out, "--key-file", key_file, "--private-dir", private, "--jobs", "1"
    )

    assert failed.returncode == 3, (failed.stdout, failed.stderr)
    check_message(failed, corpus, "read-only", "remount it read-write", "private location")
    assert not out.exists() or not released(out)
