"""File and folder names that are not UTF-8 (Latin-1 exports), as the file system holds them.

Every input is read, counted and recorded by the exact bytes of its name
(``inputs.input_path`` is a BLOB; a quarantine record keeps the name as
surrogate escapes that ``os.fsencode`` turns back into those bytes), and no
name is ever printed: names hold patients' names.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from pipeline.dicom.profile import load_profile
from pipeline.private_store import PrivateStore
from pipeline.raw.header_rules import load_header_rules
from pipeline.steps.dicom_file import deidentify_tree
from pipeline.steps.raw_file import convert_tree
from pipeline.steps.scan_file import scan_tree
from tests.batch.conftest import (
    KEY,
    check_no_temp_files,
    check_records,
    run_cli,
    store_rows,
    write_burned_in,
    write_dicom,
    write_twix,
)
from tests.release import released

# Latin-1 bytes: invalid as UTF-8, what a Windows or old PACS export writes.
FOLDER = b"Pat_M\xfcller_J\xf6rg"
NAME = b"M\xfcller_\xe9.dcm"
BAD = b"br\xfbl\xe9_\xff\xfe.dcm"
# Strings that would betray one of these names on stdout or stderr.
LEAKS = ("Pat_M", "ller_", "_J", "\\udc", "\\x", "Müller", "Jörg", "\udcfc", "\ufffd", "rg/M")


def bytes_path(folder: Path, *parts: bytes) -> Path:
    """A path below ``folder`` whose last parts are raw bytes (surrogate-escaped)."""
    return Path(os.fsdecode(os.fsencode(folder) + b"".join(b"/" + p for p in parts)))


def latin1_tree(root: Path, sample: Path) -> dict[bytes, str]:
    """A good input at FOLDER/NAME and a bad one at BAD; their raw paths -> expected outcome."""
    good = bytes_path(root, FOLDER, NAME)
    good.parent.mkdir(parents=True)
    shutil.copyfile(sample, good)
    bad = bytes_path(root, BAD)
    bad.write_bytes(b"not DICOM, not raw data, only a patient's name: M\xfcller")
    return {os.fsencode(good): "written", os.fsencode(bad): "quarantined"}


def run_record(private: Path) -> dict[str, object]:
    (record,) = (private / "runs").glob("*.json")
    return json.loads(record.read_text())


def check_silent(result: subprocess.CompletedProcess[str]) -> None:
    for stream in (result.stdout, result.stderr):
        for leak in LEAKS:
            assert leak not in stream, f"a name is printed ({leak!r}): {stream}"


def check_recorded(private: Path, expected: dict[bytes, str], extra: int = 0) -> None:
    """Each input recorded under its exact bytes; a quarantined one's record keeps them too."""
    rows = store_rows(private, "SELECT input_path, typeof(input_path), outcome FROM inputs")
    recorded = {bytes(path): (kind, outcome) for path, kind, outcome in rows}  # type: ignore[arg-type]
    assert len(recorded) == len(expected) + extra
    for raw, outcome in expected.items():
        assert recorded[raw] == ("blob", outcome), raw
    sources = set()
    for record in (private / "quarantine").rglob("*.json"):
        sources.add(os.fsencode(json.loads(record.read_bytes())["source"]))
    assert sources == {raw for raw, outcome in expected.items() if outcome == "quarantined"}


def test_deid_reads_links_and_counts_latin1_names(tmp_path: Path, key_file: Path) -> None:
    corpus = write_dicom(tmp_path / "sample", n_slices=3)
    source, out, private = tmp_path / "in", tmp_path / "out", tmp_path / "private"
    sample = sorted(corpus.root.rglob("IM*"))
    expected = latin1_tree(source, sample[0])
    # An ordinary name beside them, in the Latin-1 folder.
    other = bytes_path(source, FOLDER, b"IM0002")
    shutil.copyfile(sample[1], other)
    expected[os.fsencode(other)] = "written"

    result = run_cli("deid", source, out, "--key-file", key_file, "--private-dir", private)

    assert result.returncode == 0, result.stderr
    check_silent(result)
    assert run_record(private)["outcomes"] == {"written": 2, "quarantined": 1}
    check_recorded(private, expected)
    check_records(private, out)
    check_no_temp_files(out)
    assert len(released(out)) == 2
    # The link of the Latin-1 input names its released file.
    (written,) = store_rows(
        private, "SELECT output_path FROM inputs WHERE input_path = ?", (os.fsencode(other),)
    )
    assert store_rows(private, "SELECT count(*) FROM links WHERE output_path = ?", written) == [
        (1,)
    ]


def test_convert_reads_links_and_counts_latin1_names(tmp_path: Path) -> None:
    """Through the library (the command line's start-up costs seconds): what the CLI would
    print is the summary, checked here with the run record."""
    source, out, private = tmp_path / "raw", tmp_path / "out", tmp_path / "private"
    good = bytes_path(source, FOLDER, b"meas_MID00200_\xe9.dat")
    write_twix(good)
    bad = bytes_path(source, BAD.replace(b".dcm", b".dat"))
    bad.write_bytes(b"\0" * 4096)
    expected = {os.fsencode(good): "written", os.fsencode(bad): "quarantined"}

    summary = convert_tree(
        source, out, KEY, PrivateStore(private), load_header_rules(),
        date_shift_days=load_profile("research").date_shift_days, jobs=1,
    )  # fmt: skip

    assert summary.exit_status == 0
    printed = json.dumps(summary.as_dict(), ensure_ascii=False)
    record = (next((private / "runs").glob("*.json"))).read_text()
    check_silent(subprocess.CompletedProcess([], 0, printed, record))
    assert run_record(private)["outcomes"] == {"written": 1, "quarantined": 1}
    check_recorded(private, expected)
    check_records(private, out)
    assert len(released(out)) == 2  # the noise and the image measurement


def test_scan_findings_keep_latin1_names_as_valid_json(tmp_path: Path) -> None:
    corpus = write_burned_in(tmp_path / "sample")
    source, private, findings = tmp_path / "in", tmp_path / "private", tmp_path / "f.json"
    expected = latin1_tree(source, next(corpus.root.rglob("*.dcm")))

    result = run_cli(
        "scan", source, "--private-dir", private, "--json", findings,
        "--ocr-engine", "tesseract", "--jobs", "1",
    )  # fmt: skip

    assert result.returncode == 0, result.stderr
    check_silent(result)
    text = findings.read_bytes().decode("ascii")  # escapes only: valid in any JSON reader
    records = json.loads(text)
    by_path = {os.fsencode(r["path"]): r for r in records}
    assert set(by_path) == {FOLDER + b"/" + NAME, BAD}
    assert by_path[FOLDER + b"/" + NAME]["status"] == "flagged"
    assert by_path[BAD]["status"] == "error"
    assert run_record(private)["outcomes"] == {"scanned": 1, "quarantined": 1}
    check_recorded(
        private, {raw: outcome.replace("written", "scanned") for raw, outcome in expected.items()}
    )


def test_source_output_and_private_location_named_in_latin1(tmp_path: Path) -> None:
    """The locations themselves: SOURCE, OUTPUT and --private-dir named in Latin-1."""
    dicom = write_dicom(tmp_path / "sample", n_slices=2)
    source = bytes_path(tmp_path, b"Eing\xe4nge")
    shutil.copytree(dicom.root, source)
    raw = bytes_path(tmp_path, b"Rohdaten_\xe9")
    write_twix(raw / "meas.dat")
    burned = write_burned_in(bytes_path(tmp_path, b"Aufnahmen_\xe9"))
    private = PrivateStore(bytes_path(tmp_path, b"privat_\xe9"))
    out = bytes_path(tmp_path, b"Freigabe_\xe9")
    research = load_profile("research")

    deid = deidentify_tree(source, out / "dicom", KEY, research, private, jobs=1)
    converted = convert_tree(
        raw, out / "raw", KEY, private, load_header_rules(),
        date_shift_days=research.date_shift_days, jobs=1,
    )  # fmt: skip
    scanned, findings = scan_tree(burned.root, "tesseract", private, jobs=1)

    assert (deid.exit_status, deid.written) == (0, 2)
    assert (converted.exit_status, converted.written) == (0, 1)
    assert (scanned.exit_status, len(findings)) == (0, 1)
    check_records(private.root, out / "dicom", out / "raw")
    recorded = {bytes(r[0]) for r in store_rows(private.root, "SELECT input_path FROM inputs")}
    assert os.fsencode(raw / "meas.dat") in recorded
    assert all(path.startswith(os.fsencode(tmp_path) + b"/") for path in recorded)
    sources = {bytes(r[0]) for r in store_rows(private.root, "SELECT source FROM runs")}
    assert sources == {os.fsencode(p) for p in (source, raw, burned.root)}
