"""The export tree must be as messy as promised: PHI in paths, a bare file, damaged and foreign files."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pipeline.samples import make_subjects, write_sample_tree

from .checks import ENHANCED_MR, fold


def test_sample_tree(tmp_path: Path) -> None:
    subjects = write_sample_tree(tmp_path, n_subjects=3, slices=3, seed=1)
    assert subjects == make_subjects(3, seed=1)
    files = sorted(p for p in tmp_path.rglob("*") if p.is_file())
    for subject in subjects:
        folder = [p for p in tmp_path.iterdir() if subject.phi.patient_id in p.name]
        assert len(folder) == 1, "one folder per subject, named with the MRN"

    datasets: list[Dataset] = []
    bare: list[Path] = []
    for path in files:
        if path.name in ("empty.dcm", "notes.txt", "IM9999", "DICOMDIR") or "truncated" in (
            path.name
        ):
            continue
        if path.read_bytes()[128:132] != b"DICM":
            bare.append(path)
            with pytest.raises(InvalidDicomError):
                pydicom.dcmread(path)
        datasets.append(pydicom.dcmread(path, force=True))
    assert len(bare) == 1
    assert not pydicom.dcmread(bare[0], force=True).file_meta

    by_subject: dict[str, list[Dataset]] = {}
    for ds in datasets:
        by_subject.setdefault(ds.PatientID, []).append(ds)
    first, second, last = (by_subject[s.phi.patient_id] for s in subjects)
    assert {ds.StudyInstanceUID for ds in first if ds.Modality == "MR"} == {
        first[0].StudyInstanceUID
    }
    manufacturers = {ds.Manufacturer for ds in second}
    assert manufacturers == {"SIEMENS", "GE MEDICAL SYSTEMS"}
    assert {str(ds.SOPClassUID) for ds in first} >= {ENHANCED_MR, "1.3.12.2.1107.5.9.1"}
    names = {str(ds.PatientName) for ds in last}
    assert len(names) == 2 and len({fold(n) for n in names}) == 1

    dicomdir = pydicom.dcmread(next(p for p in files if p.name == "DICOMDIR"))
    assert dicomdir.file_meta.MediaStorageSOPClassUID == "1.2.840.10008.1.3.10"
    record = dicomdir.DirectoryRecordSequence[0]
    assert record.DirectoryRecordType == "PATIENT"
    assert record.PatientName == subjects[0].phi.patient_name

    by_name = {p.name: p for p in files}
    assert by_name["empty.dcm"].stat().st_size == 0
    assert by_name["IM0001_truncated.dcm"].stat().st_size == 300
    assert subjects[0].phi.patient_id in by_name["notes.txt"].read_text(encoding="utf-8")
    assert by_name["IM9999"].stat().st_size > 0


def test_sample_tree_without_bad_files(tmp_path: Path) -> None:
    write_sample_tree(tmp_path, n_subjects=1, slices=2, include_bad=False)
    names = {p.name for p in tmp_path.rglob("*") if p.is_file()}
    assert not names & {"empty.dcm", "notes.txt", "IM9999", "IM0001_truncated.dcm"}
