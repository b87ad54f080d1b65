"""Shared pieces of the fault tests: corpora, real processes, and the invariants every fault must keep."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from pipeline.keys import SecretKey, write_key
from tests.release import released

REPO = Path(__file__).resolve().parents[2]
KEY = SecretKey(b"\x33" * 32)
PATIENT_NAME = "Fault^Frieda"
PATIENT_ID = "MRN-FAULT-7731"
_SOP = "1.2.826.0.1.3680043.10.9999.999999"  # its last six digits are replaced per copy


def small_mr() -> bytes:
    """A small MR image with PHI (cheap to de-identify, so a corpus of thousands runs for seconds)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = _SOP
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = MRImageStorage
    ds.SOPInstanceUID = _SOP
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.10.9999.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.10.9999.2"
    ds.FrameOfReferenceUID = "1.2.826.0.1.3680043.10.9999.3"
    ds.PatientName = PATIENT_NAME
    ds.PatientID = PATIENT_ID
    ds.PatientBirthDate = "19610203"
    ds.StudyDate = "20240311"
    ds.Modality = "MR"
    ds.InstitutionName = "Fault Clinic"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M"]
    ds.Rows = ds.Columns = 8
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(range(128))
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def corpus(folder: Path, count: int, per_folder: int = 200) -> Path:
    """``count`` distinct small MR files (distinct SOP Instance UIDs), in sub-folders."""
    template = small_mr()
    stem = _SOP[:-6].encode()
    for index in range(count):
        target = folder / f"series{index // per_folder:03d}" / f"IM{index:05d}"
        target.parent.mkdir(parents=True, exist_ok=True)
        number = f"{100000 + index}".encode()  # six digits, no leading zero (a valid UID)
        target.write_bytes(template.replace(_SOP.encode(), stem + number))
    return folder


def key_file(folder: Path) -> Path:
    path = folder / "keys" / "site.key"
    path.parent.mkdir(parents=True, mode=0o700, exist_ok=True)
    if not path.exists():
        write_key(path, KEY)
    return path


def env() -> dict[str, str]:
    """The environment of a CLI run from this checkout."""
    return {**os.environ, "PYTHONPATH": str(REPO)}


def start(args: list[str], **extra: str) -> subprocess.Popen[str]:
    """``mricurate ARGS`` as a real process in a session of its own (signals reach it alone)."""
    return subprocess.Popen(
        [sys.executable, "-m", "mricurate", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env(), **extra},
        start_new_session=True,
    )


def cli(args: list[str], **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mricurate", *args],
        capture_output=True,
        text=True,
        env={**env(), **extra},
        timeout=300,
    )


def descendants(pid: int) -> set[int]:
    """Every living process below ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    return _state(pid) not in ("", "Z")


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def kill(process: subprocess.Popen[str], number: signal.Signals) -> None:
    os.kill(process.pid, number)


def freeze(process: subprocess.Popen[str]) -> None:
    """Stop the run's main process where it is (SIGSTOP), so the signal a test sends next
    lands mid-run even when the rest of the run would take less time than the test's
    next look: on a quiet machine 600 small files take well under a second.

    Its workers go on with what they hold and then wait for it.  A SIGKILL kills a
    stopped process; any other signal stays pending until :func:`thaw`.
    """
    assert process.poll() is None, "the run ended before the test could stop it"
    os.kill(process.pid, signal.SIGSTOP)
    wait_for(lambda: _state(process.pid) in ("T", "t"), 10, "the run to stop")


def thaw(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGCONT)


def stop_mid_run(process: subprocess.Popen[str], started: Callable[[], bool]) -> None:
    """Let a run's workers go in short steps until ``started()``; then stop the run there.

    Waiting for a moment of a run by looking at it now and then loses the race
    when the rest of the run takes less time than a look: a quick run on a
    busy machine ended before the test saw it mid-way (a worker finished 300
    small files while its first batch was being committed).  So the workers
    (and their children: an OCR program) run only for 20 ms at a time and
    are stopped while ``started()`` is asked; the main process goes on
    throughout, so it collects and commits what they did.  At the end the
    main process is stopped (:func:`freeze`) and the workers go on.
    """
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "the run ended before the test could stop it"
        below = descendants(process.pid)
        _signal_all(below, signal.SIGCONT)
        time.sleep(0.02)
        _signal_all(below, signal.SIGSTOP)
        _signal_all(descendants(process.pid) - below, signal.SIGSTOP)  # forked meanwhile
        if started():
            break
        if time.monotonic() > deadline:
            _signal_all(descendants(process.pid), signal.SIGCONT)
            raise AssertionError("timed out after 60 s waiting for the run to get going")
    freeze(process)
    _signal_all(descendants(process.pid), signal.SIGCONT)


def _signal_all(pids: set[int], number: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, number)
    if number is signal.SIGSTOP:
        wait_for(lambda: all(_state(pid) in ("T", "t", "", "Z") for pid in pids), 10,
                 "the run's workers to stop")  # fmt: skip


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def temps(output: Path) -> list[Path]:
    """Temp files a run left in an output folder (its own state folder included)."""
    return [p for p in output.rglob("*") if p.is_file() and ".mricurate-tmp-" in p.name]


def assert_consistent(private: Path, output: Path, *, links: bool = True) -> None:
    """No released file without its records; no finished record without its file.

    ``links``: also every released file has a link row (the release area;
    fastMRI files are linked through their ISMRMRD twin).
    """
    root = os.fsencode(output.resolve())
    with sqlite3.connect(private / "links.sqlite") as db:
        rows = db.execute(
            "SELECT o.relpath, c.state FROM outputs o JOIN commits c USING (commit_id) "
            "WHERE o.area_root = ?",
            (root,),
        ).fetchall()
        linked = {r[0] for r in db.execute("SELECT output_path FROM links")}
    recorded = {relpath for relpath, _ in rows}
    done = {relpath for relpath, state in rows if state == "done"}
    on_disk = {p.relative_to(output).as_posix() for p in released(output)}
    assert on_disk <= recorded, f"released without a record: {sorted(on_disk - recorded)[:3]}"
    assert done <= on_disk, f"recorded but missing: {sorted(done - on_disk)[:3]}"
    if links:
        assert on_disk <= linked, f"released without link rows: {sorted(on_disk - linked)[:3]}"


def assert_no_phi(*texts: str) -> None:
    for text in texts:
        for value in (PATIENT_ID, PATIENT_NAME, "Fault", "series0"):
            assert value not in text, f"{value!r} printed"
