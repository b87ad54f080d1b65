"""Shared pieces of the batch fault tests: real mounts, real subprocesses, real records.

Everything here works on what a run leaves on disk (the release, the private
location's ``links.sqlite`` and quarantine) and on what it prints, never on
the runner's internals, so the same checks hold after any fault.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from pipeline.keys import SecretKey, write_key
from pipeline.samples import make_subjects, mr_series, other_objects
from pipeline.samples.twix import SyntheticMeasurement, write_vd_twix
from tests.release import released

REPO = Path(__file__).resolve().parents[2]
KEY = SecretKey(b"\x11" * 32)
OTHER_KEY = SecretKey(b"\x22" * 32)
TEMP_PREFIX = ".mricurate-tmp-"  # pipeline.atomic.TEMP_PREFIX


# -- running the command line ---------------------------------------------------


def cli_env() -> dict[str, str]:
    """The environment of a CLI subprocess: this checkout first on the import path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def run_cli(
    *args: str | os.PathLike[str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m mricurate ARGS`` as a user runs it; never raises on a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "mricurate", *map(str, args)],
        capture_output=True, text=True, errors="surrogateescape", env=cli_env(),
        timeout=timeout, check=False,
    )  # fmt: skip


def start_cli(*args: str | os.PathLike[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "mricurate", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="surrogateescape",
        env=cli_env(),
    )  # fmt: skip


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The test key, mode 0600, in a folder of its own (apart from every data folder)."""
    path = tmp_path / "keys" / "site.key"
    path.parent.mkdir()
    write_key(path, KEY)
    return path


# -- real file systems -----------------------------------------------------------


@dataclass
class Tmpfs:
    """A tmpfs mounted for one test (unmounted at its end)."""

    point: Path

    def remount(self, options: str) -> None:
        done = subprocess.run(
            ["mount", "-o", f"remount,{options}", str(self.point)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, f"remount {options}: {done.stderr}"

    def fill(self) -> Path:
        """Take every free block with one file; return it."""
        filler = self.point / "filler"
        block = b"\0" * (64 << 10)
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    if len(block) == 4096:
                        break
                    block = block[: len(block) // 2]
        finally:
            os.close(fd)
        assert os.statvfs(self.point).f_bavail == 0
        return filler

    def leave(self, kib: int) -> None:
        """Fill it but for about ``kib`` KiB."""
        filler = self.fill()
        size = filler.stat().st_size
        os.truncate(filler, max(0, size - kib * 1024))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[..., Tmpfs]]:
    """``tmpfs("name", "64k", nr_inodes=...)`` mounts a tmpfs at a fresh folder under tmp_path.

    Skips (with the reason) when not root or when the mount is refused.
    """
    mounted: list[Path] = []

    def mount(name: str, size: str = "2m", **options: object) -> Tmpfs:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        if shutil.which("mount") is None:
            pytest.skip("no mount command")
        point = tmp_path / f"mnt-{name}"
        point.mkdir()
        opts = ",".join([f"size={size}", "mode=0755", *(f"{k}={v}" for k, v in options.items())])
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(point)
        return Tmpfs(point)

    try:
        yield mount
    finally:
        for point in reversed(mounted):
            done = subprocess.run(["umount", str(point)], capture_output=True, check=False)
            if done.returncode != 0:
                subprocess.run(["umount", "-l", str(point)], capture_output=True, check=False)


# -- inputs ----------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    """Inputs written for a test and the PHI planted in them (values and path parts)."""

    root: Path
    phi: tuple[str, ...]


def _phi_of(subject_index: int, seed: int = 0) -> tuple[str, str, str]:
    phi = make_subjects(subject_index + 1, seed)[subject_index].phi
    family = phi.patient_name.split("^")[0]
    return family, phi.patient_id, phi.patient_name


def folder_name(family: str, patient_id: str) -> str:
    """A PACS-export-style folder name: the patient's name and MRN (PHI in the path)."""
    ascii_family = family.encode("ascii", "ignore").decode() or "PATIENT"
    return f"{ascii_family}_{patient_id}"


def write_dicom(root: Path, *, n_slices: int = 12, subjects: int = 1, rows: int = 32) -> Corpus:
    """Classic MR slices (one series per subject) under folders named after the patient."""
    planted: list[str] = []
    for index, subject in enumerate(make_subjects(subjects)):
        family, patient_id, _ = _phi_of(index)
        folder = root / folder_name(family, patient_id)
        folder.mkdir(parents=True, exist_ok=True)
        for k, ds in enumerate(
            mr_series(subject, n_slices=n_slices, rows=rows, cols=rows, seed=index)
        ):
            ds.save_as(folder / f"IM{k + 1:04d}", enforce_file_format=True)
        planted += [patient_id, folder.name, *(p for p in family.split() if len(p) >= 4)]
    return Corpus(root, tuple(dict.fromkeys(planted)))


def write_burned_in(root: Path, *, size: int = 0) -> Corpus:
    """A secondary capture with the patient's name and MRN burned into its pixels.

    ``size`` > 0 puts it on a noisy ``size`` x ``size`` canvas: its OCR temp
    files are then hundreds of KB (random pixels do not compress).
    """
    import numpy as np

    subject = make_subjects(1)[0]
    family, patient_id, _ = _phi_of(0)
    ds = other_objects(subject)["secondary_capture"]
    if size:
        text = np.frombuffer(ds.PixelData, np.uint8).reshape(ds.Rows, ds.Columns)
        canvas = np.random.default_rng(0).integers(0, 256, (size, size), dtype=np.uint8)
        canvas[: text.shape[0], : text.shape[1]] = text
        ds.Rows, ds.Columns = canvas.shape
        ds.PixelData = canvas.tobytes()
    folder = root / folder_name(family, patient_id)
    folder.mkdir(parents=True, exist_ok=True)
    ds.save_as(folder / "screen.dcm", enforce_file_format=True)
    return Corpus(root, (patient_id, folder.name))


def twix_measurement(number: int) -> SyntheticMeasurement:
    """A small image measurement whose header names its (planted) patient."""
    return SyntheticMeasurement(
        patient_name=f"DOE^JANE{number}" if number else "DOE^JANE",
        patient_id=f"PID-SYN-{40417 + number}",
        channels=2, samples=64, lines=16, slices=1, meas_id=200 + number, seed=number,
    )  # fmt: skip


def write_twix(path: Path, number: int = 0) -> SyntheticMeasurement:
    """One Siemens twix file: a noise scan and an image measurement."""
    image = twix_measurement(number)
    noise = replace(image, noise=True, lines=8, meas_id=100 + number)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_vd_twix(path, [noise, image])
    return image


def write_raw(root: Path, n_files: int = 1) -> Corpus:
    planted: list[str] = []
    for number in range(n_files):
        image = write_twix(root / f"DOE_{image_id(number)}" / "meas_MID00200_knee.dat", number)
        planted += [image.patient_id, f"DOE_{image_id(number)}"]
    return Corpus(root, tuple(planted))


def image_id(number: int) -> str:
    return twix_measurement(number).patient_id


# -- what a run left -------------------------------------------------------------


def store_rows(
    private: Path, sql: str, params: tuple[object, ...] = ()
) -> list[tuple[object, ...]]:
    """Rows of the private location's link table, read from a copy.

    A copy (with its WAL) can be read whatever state the location is in: full,
    read-only, or with a run's connection still open.
    """
    db = private / "links.sqlite"
    if not db.exists():
        return []
    with tempfile.TemporaryDirectory() as scratch:
        for suffix in ("", "-wal"):
            source = Path(f"{db}{suffix}")
            if source.exists():
                shutil.copyfile(source, Path(scratch) / f"links.sqlite{suffix}")
        connection = sqlite3.connect(Path(scratch) / "links.sqlite")
        try:
            return [tuple(row) for row in connection.execute(sql, params)]
        finally:
            connection.close()


def run_ids(private: Path) -> set[str]:
    return {str(r[0]) for r in store_rows(private, "SELECT run_id FROM runs")}


def quarantined(private: Path) -> set[str]:
    """Names of the quarantined copies and their records."""
    folder = private / "quarantine"
    return {p.name for p in folder.rglob("*") if p.is_file()} if folder.is_dir() else set()


def release_bytes(out: Path) -> dict[str, bytes]:
    """Every released file of ``out`` by its path in it."""
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in released(out)}


def check_no_temp_files(*outputs: Path) -> None:
    """(a) No temp file anywhere in an OUTPUT: its temp folder is empty or gone."""
    for out in outputs:
        if not out.exists():
            continue
        temp = out / ".mricurate" / "tmp"
        assert not temp.exists() or not any(temp.iterdir()), f"temp files left in {temp}"
        left = [p for p in out.rglob(f"{TEMP_PREFIX}*")]
        assert not left, f"temp files left in {out}: {left}"


def check_records(private: Path, *outputs: Path, links: bool = True) -> None:
    """(b) every released file has its output and link rows; (c) done rows point at files."""
    rows = store_rows(
        private,
        "SELECT o.area_root, o.relpath, c.state FROM outputs o "
        "LEFT JOIN commits c ON c.commit_id = o.commit_id",
    )
    recorded = {(bytes(root), str(rel)): state for root, rel, state in rows}  # type: ignore[arg-type]
    linked = {str(r[0]) for r in store_rows(private, "SELECT output_path FROM links")}
    for out in outputs:
        root = os.fsencode(out.resolve())
        for path in released(out):
            relpath = path.relative_to(out).as_posix()
            assert (root, relpath) in recorded, f"released without a record: {relpath}"
            if links:
                assert relpath in linked, f"released without a link row: {relpath}"
    for (root, relpath), state in recorded.items():
        if state == "done":
            final = Path(os.fsdecode(root)) / relpath
            assert final.is_file(), f"a done record points at no file: {relpath}"


def check_not_blamed(private: Path, runs_before: set[str], quarantine_before: set[str]) -> None:
    """(d) Our own failure blamed no input: no reasons recorded, nothing new in quarantine."""
    for run in run_ids(private) - runs_before:
        blamed = store_rows(
            private,
            "SELECT outcome, reason FROM inputs WHERE run_id = ? AND (reason != '' "
            "OR outcome IN ('quarantined', 'held back'))",
            (run,),
        )
        assert not blamed, f"inputs blamed for our own failure: {blamed}"
    assert quarantined(private) == quarantine_before, "inputs quarantined for our own failure"


def check_message(
    result: subprocess.CompletedProcess[str], corpus: Corpus | None, *needles: str
) -> None:
    """(e) stderr says each of ``needles`` (case-insensitive) and nothing prints PHI."""
    said = result.stderr.lower()
    for needle in needles:
        assert needle.lower() in said, f"{needle!r} not in stderr: {result.stderr}"
    if corpus is not None:
        check_no_phi(result, corpus)


def check_no_phi(result: subprocess.CompletedProcess[str], corpus: Corpus) -> None:
    for stream in (result.stdout, result.stderr):
        for value in corpus.phi:
            assert value.lower() not in stream.lower(), f"PHI {value!r} printed: {stream}"
        assert not _input_names(corpus.root) & _words(stream), f"an input name printed: {stream}"


def _input_names(root: Path) -> set[str]:
    names: set[str] = set()
    for path in root.rglob("*"):
        names.add(path.name)
    return {n for n in names if len(n) >= 4}


def _words(text: str) -> set[str]:
    import re

    return set(re.split(r"[\s/'\"(),:;]+", text))
