"""A run stopped by SIGINT, SIGTERM or SIGKILL: real signals to a real ``mricurate`` process.

SIGINT and SIGTERM stop it cleanly (workers stopped, temps removed, the
summary of what was done, 130 / 143, no traceback); after SIGKILL no process
of the run is left 5 s later, and the next run finishes the job.  In every
case no released file is without its records.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from pipeline.samples import make_subjects, mr_series
from pipeline.samples.twix import SyntheticMeasurement, write_vd_twix
from tests.batch.faults import (
    alive,
    assert_consistent,
    assert_no_phi,
    cli,
    corpus,
    descendants,
    key_file,
    kill,
    start,
    stop_mid_run,
    temps,
    thaw,
    wait_for,
)
from tests.release import released

CORPUS = 600  # the first commit comes after 256: the signal lands mid-run


@pytest.fixture(scope="module")
def dicom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus(tmp_path_factory.mktemp("dicom") / "in", CORPUS)


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("raw") / "in"
    folder.mkdir()
    for number in range(8):
        meas = SyntheticMeasurement(
            patient_name="Fault^Frieda", patient_id=f"MRN-FAULT-{number}", channels=8,
            samples=256, lines=64, slices=4, meas_id=300 + number, seed=number,
        )  # fmt: skip
        write_vd_twix(folder / f"meas_{number:03d}.dat", [meas])
    return folder


@pytest.fixture(scope="module")
def slices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("slices") / "in"
    folder.mkdir()
    subject = make_subjects(1, seed=5)[0]
    for index, ds in enumerate(mr_series(subject, n_slices=16)):
        ds.save_as(folder / f"IM{index:03d}", enforce_file_format=True)
    return folder


def _started(process_pid: int, output: Path | None, kind: str) -> bool:
    """Workers are up and at work: a batch committed (deid), candidates written (convert),
    an OCR program running (scan)."""
    below = descendants(process_pid)
    if output is None:
        return len(below) > 2  # two workers and a tesseract
    if kind == "deid":
        return len(below) >= 2 and bool(released(output))
    return len(below) >= 2 and (bool(released(output)) or len(temps(output)) >= 2)


def _command(kind: str, source: Path, tmp_path: Path) -> tuple[list[str], Path | None, Path]:
    private = tmp_path / "private"
    if kind == "scan":
        args = ["scan", str(source), "--private-dir", str(private), "--no-prefilter",
                "--ocr-engine", "tesseract"]  # fmt: skip
        return [*args, "--jobs", "2"], None, private
    out = tmp_path / "out"
    args = [kind, str(source), str(out), "--key-file", str(key_file(tmp_path))]
    return [*args, "--private-dir", str(private), "--jobs", "2"], out, private


@pytest.mark.parametrize(
    ("kind", "number"),
    [
        ("deid", signal.SIGTERM),
        ("convert", signal.SIGTERM),
        ("scan", signal.SIGINT),  # SIGINT is Ctrl-C: one command shows it (the code path is one)
    ],
)
def test_sigint_and_sigterm_stop_the_run_cleanly(
    kind: str, number: signal.Signals, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue({"deid": "dicom", "convert": "raw", "scan": "slices"}[kind])
    args, out, private = _command(kind, source, tmp_path)
    process = start(args, TMPDIR=str(tmp_path / "system-tmp"))
    (tmp_path / "system-tmp").mkdir()
    stop_mid_run(process, lambda: _started(process.pid, out, kind))
    workers = descendants(process.pid)
    kill(process, number)  # pending until the run goes on
    thaw(process)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + number, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {number.name}" in stdout
    assert_no_phi(stdout, stderr)
    assert not [pid for pid in workers if alive(pid)]
    assert not (private / "tmp").exists()  # OCR crops and other temps removed
    assert not list((tmp_path / "system-tmp").iterdir())  # nothing ever written there
    if out is not None:
        assert not temps(out)
        assert_consistent(private, out)
        done = len(released(out))
        if kind == "deid":
            assert 0 < done < CORPUS  # what finished before the signal was committed, no more
        # The next run goes on: what was done is not redone.
        again = cli(args)
        assert again.returncode == 0, again.stderr
        assert ("unchanged" in again.stdout) == bool(done)
        assert_consistent(private, out)
        assert not temps(out)


@pytest.mark.parametrize("kind", ["deid", "convert", "scan"])
def test_after_sigkill_no_process_is_left_and_the_next_run_finishes(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    source = request.getfixturevalue({"deid": "dicom", "convert": "raw", "scan": "slices"}[kind])
    args, out, private = _command(kind, source, tmp_path)
    (tmp_path / "system-tmp").mkdir()
    process = start(args, TMPDIR=str(tmp_path / "system-tmp"))
    stop_mid_run(process, lambda: _started(process.pid, out, kind))
    everyone = descendants(process.pid)
    assert len(everyone) >= 2
    kill(process, signal.SIGKILL)
    process.wait(timeout=10)
    killed = time.monotonic()
    wait_for(lambda: not [p for p in everyone if alive(p)], 5, "every worker to die")
    assert time.monotonic() - killed < 5
    assert not list((tmp_path / "system-tmp").iterdir())  # OCR never wrote outside private/
    if out is not None:
        assert_consistent(private, out)  # even mid-commit
    again = cli(args)
    assert again.returncode == 0, again.stderr
    assert_no_phi(again.stdout, again.stderr)
    assert not (private / "tmp").exists()  # what the killed run left there is gone
    if out is not None:
        assert not temps(out)
        assert_consistent(private, out)
        if kind == "deid":
            assert len(released(out)) == CORPUS
